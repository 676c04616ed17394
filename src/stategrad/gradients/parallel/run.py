"""Scale-out on PyTorch's own distributed runtime (``torchrun`` / ``torch.distributed``).

State gradients
    The usable start positions are cut into more slices than there are ranks
    (:func:`plan_slices`).  Rank 0 computes the exact recurrent state at every
    slice start with one cheap no-grad forward pass and broadcasts it; ranks then
    take slices from a shared queue (an atomic counter in the process group's
    key-value store), so a fast rank takes more of them.  Every finished slice is
    written to ``<output>.parts/`` and every slice in progress keeps an engine
    checkpoint there, so a rerun loads the finished slices and resumes the others.
    Sums and counts are reduced to rank 0, which alone writes the result file.
    In carry semantics the merged result equals the single-process one to rounding.

Training under ``torchrun`` (:class:`stategrad.lm.TrainingSync`) and the process group
(:mod:`stategrad.comm`) live elsewhere.

It works without a launcher too: with no ``WORLD_SIZE`` in the environment it
runs as one process (world size 1), with the same parts directory and resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...comm import Communicator, DistributedError, matmul_precision
from ...data import ClassSet
from ...lm import RNNLM, LanguageModel
from ..engine import EngineError, EngineOptions, StateGradientEngine
from ..result import GradientResult, load_result
from .queue import _work_queue
from .reduce import _add, _reduce
from .slices import (
    _finished_parts,
    _load_or_make_plan,
    _part_name,
    boundary_states,
    plan_slices,
    usable_positions,
)


def _fingerprint(engine: StateGradientEngine, usable: int) -> dict[str, Any]:
    """What must agree for a parts directory to belong to this run (the device and the
    number of ranks may change between runs).  The inputs are named as in the engine's
    own fingerprint (:meth:`StateGradientEngine.identity`); the options are stored by name
    so that a refusal can say which one differs."""
    o = engine.opts
    options = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if f.name != "device"}
    options["dtype"] = str(o.dtype)
    options["layer"] = engine.layer
    ident = engine.identity()
    return {
        "model": ident["model"],
        "text_sha256": ident["text_sha256"],
        "tokens": int(len(engine.tokens)),
        "usable": int(usable),
        "options": json.loads(json.dumps(options, default=str)),
        "classes": list(engine.classes.names),
        "class_membership": ident["class_membership"],
    }


@dataclasses.dataclass
class RankReport:
    """What one rank did: slices computed and loaded, positions, busy seconds."""

    rank: int
    host: str
    computed: list[int]
    loaded: list[int]
    positions: int
    seconds: float
    error: str | None = None
    failed_slice: int | None = None

    @property
    def rate(self) -> float:
        return self.positions / self.seconds if self.seconds > 0 else math.inf


@dataclasses.dataclass
class DistributedRun:
    """The outcome on this rank: ``result`` (rank 0 only; None elsewhere), where it was
    written, and every rank's report; ``slow_ranks`` lists ranks far below the median
    rate, with a message for each."""

    result: GradientResult | None
    output: Path
    rank: int
    world_size: int
    slices: list[tuple[int, int]]
    reports: list[RankReport]
    slow_ranks: dict[int, str]
    resumed_slices: int
    seconds: float


def compute_state_gradients_distributed(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    options: EngineOptions,
    classes: ClassSet | None = None,
    *,
    out_path: str | os.PathLike,
    start: int = 0,
    stop: int | None = None,
    parts_dir: str | os.PathLike | None = None,
    slices_per_rank: int = 4,
    n_slices: int | None = None,
    tf32: bool = False,
    checkpoint_every: float = 300.0,
    keep_parts: bool = False,
    text_info: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    progress: bool = False,
    slow_factor: float = 0.5,
    echo: Callable[[str], None] | None = None,
    timeout_s: float = 1800.0,
) -> DistributedRun:
    """Compute state gradients of ``tokens`` on every rank of a ``torchrun`` job (or in
    this process alone when not launched so) and write ONE result file, ``out_path``,
    from rank 0.  Call it on every rank with the same arguments.  Start positions
    ``start <= t < stop`` (default: all) are used, as in ``StateGradientEngine.run``.

    ``parts_dir`` (default ``<out_path>.parts``) must be a folder all ranks can write;
    finished slices and in-slice engine checkpoints live there until the result is
    written (kept if ``keep_parts``), so a rerun after a failure resumes.  The text
    is cut into ``n_slices`` slices (default ``slices_per_rank`` x ranks, none
    shorter than 8 x max_delay).  ``tf32`` allows TF32 products on a GPU.  ``echo``
    receives progress and the per-rank report on rank 0 (default: standard error).
    ``run_info`` is stored as the result's ``metadata["run"]``, with the seconds taken.
    """
    started = time.perf_counter()
    comm = Communicator.from_environment(options.device, timeout_s)
    if echo is None:
        def echo(message: str) -> None:
            print(message, file=sys.stderr, flush=True)
    say = echo if comm.is_main else (lambda message: None)
    try:
        return _run(comm, model, tokens, options, classes, Path(out_path), start, stop, parts_dir,
                    slices_per_rank, n_slices, tf32, checkpoint_every, keep_parts, text_info,
                    run_info, progress, slow_factor, say, started, extra_metadata)
    finally:
        comm.close()


def _run(comm: Communicator, model, tokens, options: EngineOptions, classes, output: Path,
         start: int, stop: int | None, parts_dir, slices_per_rank: int, n_slices: int | None,
         tf32: bool, checkpoint_every: float, keep_parts: bool, text_info, run_info,
         progress: bool, slow_factor: float, say: Callable[[str], None], started: float,
         extra_metadata: dict[str, Any] | None = None) -> DistributedRun:
    opts = dataclasses.replace(options, device=comm.device(options.device))
    parts = Path(parts_dir) if parts_dir is not None else output.with_name(output.name + ".parts")
    with torch.no_grad(), matmul_precision(tf32):
        engine = StateGradientEngine(model, tokens, opts, classes)
        usable = usable_positions(len(engine.tokens), opts)
        stop = usable if stop is None else min(stop, usable)
        if not 0 <= start < stop:
            raise EngineError(f"no start positions in [{start}, {stop}): the text has {usable} "
                              f"usable positions ({len(engine.tokens)} tokens)")
        wanted = n_slices or max(1, slices_per_rank) * comm.world_size
        plan, reused = _agree_on_plan(comm, engine, parts, start, stop, usable, wanted)
        owners = _owners_of_finished(comm, parts, plan)
        todo = [i for i in range(len(plan)) if i not in owners]
        if reused:
            say(f"resuming: {len(owners)} of {len(plan)} slices already finished in {parts}")
        say(f"{stop - start:,} start positions in {len(plan)} slices over {comm.world_size} rank(s)")

        # Exact states at the unfinished slices' starts: one forward pass, on rank 0.
        states = boundary_states(engine, [plan[i][0] for i in todo]) if comm.is_main else None
        states = comm.broadcast(states)
        work = _Work(RankReport(comm.rank, socket.gethostname(), [], [], 0, 0.0))
        _do_slices(comm, engine, work, parts, plan, owners, _work_queue(comm, todo), states,
                   progress=progress and comm.is_main, checkpoint_every=checkpoint_every,
                   text_info=text_info)
        reports: list[RankReport] = comm.all_gather(work.report)
        _raise_failures(reports, plan, parts)

        result = _reduce(comm, engine, work.local, work.blocks, work.metadata, start, stop)
        slow = _slow_ranks(reports, slow_factor)
        elapsed = time.perf_counter() - started
        if comm.is_main:
            assert result is not None
            if run_info is not None:
                result.metadata["run"] = dict(run_info) | {"seconds": round(elapsed, 3)}
            if extra_metadata:
                result.metadata.update(extra_metadata)
            result.metadata.update(_run_record(comm, plan, reports, reused, tf32, elapsed))
            result.save(output)
            say(f"result written to {output}")
            _say_reports(say, reports, slow)
        comm.barrier()  # the result exists before any rank returns
        if comm.is_main and not keep_parts:
            shutil.rmtree(parts, ignore_errors=True)
    return DistributedRun(result if comm.is_main else None, output, comm.rank, comm.world_size,
                          plan, reports, slow, len(owners), elapsed)


def _agree_on_plan(comm: Communicator, engine: StateGradientEngine, parts: Path, start: int,
                   stop: int, usable: int, wanted: int) -> tuple[list[tuple[int, int]], bool]:
    """The slice plan, made or read by rank 0 and sent to every rank (an error there is
    raised everywhere).  Returns (plan, whether it was reused)."""
    fingerprint = _fingerprint(engine, usable) | {"range": [int(start), int(stop)]}
    plan_or_error: Any = None
    if comm.is_main:
        opts = engine.opts
        fresh = plan_slices(stop, wanted, align=opts.block_size or 1,
                            min_length=8 * opts.max_delay, start=start)
        try:
            plan_or_error = _load_or_make_plan(parts, fingerprint, fresh)
        except (DistributedError, OSError) as exc:
            plan_or_error = f"{type(exc).__name__}: {exc}"
    plan_or_error = comm.broadcast(plan_or_error)
    if isinstance(plan_or_error, str):
        raise DistributedError(f"rank 0: {plan_or_error}")
    return plan_or_error


def _owners_of_finished(comm: Communicator, parts: Path, plan: list[tuple[int, int]]
                        ) -> dict[int, int]:
    """Which rank loads each finished slice: one of the ranks that see its part file."""
    seen = comm.all_gather(_finished_parts(parts, plan) if parts.is_dir() else [])
    owners: dict[int, int] = {}
    for i in range(len(plan)):
        seers = [r for r in range(comm.world_size) if i in seen[r]]
        if seers:
            owners[i] = seers[i % len(seers)]
    return owners


@dataclasses.dataclass
class _Work:
    """This rank's slices added up so far, and its report."""

    report: RankReport
    local: GradientResult | None = None
    metadata: dict[str, Any] | None = None
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=list)

    def add(self, part: GradientResult) -> None:
        self.local, self.metadata = _add(self.local, part, self.blocks), self.metadata or part.metadata


def _do_slices(comm: Communicator, engine: StateGradientEngine, work: _Work, parts: Path,
               plan: list[tuple[int, int]], owners: dict[int, int],
               claim: Callable[[], int | None], states, *, progress: bool,
               checkpoint_every: float, text_info) -> None:
    """Load this rank's finished slices, then compute slices from the queue until it is
    empty.  A failure is recorded in the report (every rank learns of it below, so that
    no rank waits forever); in one process it is raised."""
    current: int | None = None
    try:
        for i, r in owners.items():
            if r != comm.rank:
                continue
            current = i
            work.add(load_result(parts / _part_name(i, *plan[i])))
            work.report.loaded.append(i)
        while (i := claim()) is not None:
            current = i
            a, b = plan[i]
            t0 = time.perf_counter()
            part = engine.run(a, b, initial_state=states[a], progress=progress,
                              checkpoint_path=parts / f"slice-{i:05d}.ckpt",
                              checkpoint_every=checkpoint_every, text_info=text_info,
                              keep_checkpoint=True)
            part.save(parts / _part_name(i, a, b))
            # Only once the slice's result is in place (a kill in between resumes).
            engine.remove_running_state(parts / f"slice-{i:05d}.ckpt")
            work.report.seconds += time.perf_counter() - t0
            work.report.positions += b - a
            work.report.computed.append(i)
            work.add(part)
    except Exception as exc:
        work.report.error = f"{type(exc).__name__}: {exc}"
        work.report.failed_slice = current
        if not comm.active:
            raise
        traceback.print_exc()


def _raise_failures(reports: list[RankReport], plan: list[tuple[int, int]], parts: Path) -> None:
    failed = [r for r in reports if r.error]
    if failed:
        lines = [f"rank {r.rank} ({r.host}) failed"
                 + (f" on slice {r.failed_slice} {list(plan[r.failed_slice])}"
                    if r.failed_slice is not None else "") + f": {r.error}" for r in failed]
        raise DistributedError("; ".join(lines) + f". Finished slices are kept in {parts}; "
                               "run the same command again to resume")


def _run_record(comm: Communicator, plan: list[tuple[int, int]], reports: list[RankReport],
                reused: bool, tf32: bool, elapsed: float) -> dict[str, Any]:
    """The result's metadata about how it was computed."""
    return {
        "resumed": bool(reused and any(r.loaded for r in reports)),
        "matmul_tf32": bool(tf32),
        "distributed": {
            "world_size": comm.world_size,
            "slices": [list(s) for s in plan],
            "ranks": [{"rank": r.rank, "host": r.host, "computed": r.computed,
                       "loaded": r.loaded, "positions": r.positions,
                       "seconds": round(r.seconds, 3)} for r in reports],
            "seconds": round(elapsed, 3),
        },
    }


def _say_reports(say: Callable[[str], None], reports: list[RankReport],
                 slow: dict[int, str]) -> None:
    for r in reports:
        say(f"rank {r.rank} ({r.host}): {len(r.computed)} slices computed, "
            f"{len(r.loaded)} loaded, {r.positions:,} positions in {r.seconds:.1f} s"
            + (f" ({r.rate:,.0f} positions/s)" if r.positions else ""))
    for message in slow.values():
        say(message)


def _slow_ranks(reports: list[RankReport], factor: float) -> dict[int, str]:
    """Ranks whose rate (positions per busy second) is below ``factor`` x the median."""
    rates = [r.rate for r in reports if r.positions and math.isfinite(r.rate)]
    if len(rates) < 2:
        return {}
    median = statistics.median(rates)
    return {r.rank: f"rank {r.rank} ({r.host}) is slow: {r.rate:,.0f} positions/s against a "
                    f"median of {median:,.0f} over {len(rates)} ranks"
            for r in reports if r.positions and r.rate < factor * median}


__all__ = [
    "DistributedRun",
    "RankReport",
    "compute_state_gradients_distributed",
]
