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
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..comm import Communicator, DistributedError, matmul_precision
from ..data import ClassSet
from ..lm import RNNLM, LanguageModel
from .engine import EngineError, EngineOptions, StateGradientEngine
from .result import GradientResult, ResultError, load_result, merged_coverage

PLAN_FORMAT = "stategrad-slice-plan"
PLAN_VERSION = 1


def precision_error(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    options: EngineOptions,
    classes: ClassSet | None = None,
    *,
    tf32: bool = False,
    positions: int = 2000,
) -> dict[str, float]:
    """How far ``options.dtype`` (with TF32 products if ``tf32``) is from float64 on the
    first ``positions`` start positions of ``tokens``: the largest element-wise error
    of the sums relative to their largest magnitude, and the largest relative
    Frobenius error of a mean ``Gbar_d`` over delays.  Report it whenever the user
    picks a reduced precision."""
    n = min(len(tokens), positions + options.max_delay - 1)
    text = np.asarray(tokens)[:n]
    stop = min(positions, n)
    with torch.no_grad():
        ref = StateGradientEngine(model, text, dataclasses.replace(options, dtype=torch.float64,
                                                                     block_size=None),
                                  classes).run(0, stop, progress=False)
        with matmul_precision(tf32):
            low = StateGradientEngine(model, text, dataclasses.replace(options, block_size=None),
                                      classes).run(0, stop, progress=False)
    scale = float(np.abs(ref.sums).max()) or 1.0
    max_rel = float(np.abs(low.sums - ref.sums).max()) / scale
    fro = []
    for d in range(ref.max_delay):
        if ref.counts[d, 0]:
            a, b = ref.sums[d, 0], low.sums[d, 0]
            fro.append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-300)))
    return {"max_relative_error": max_rel, "max_mean_frobenius_error": max(fro, default=0.0),
            "positions": float(stop)}


# --- slices -------------------------------------------------------------------------------

def usable_positions(n_tokens: int, options: EngineOptions) -> int:
    """Start positions the engine uses: all of the text in carry semantics; whole
    segments but the last in segment semantics (as the original)."""
    if options.semantics == "segment":
        n = options.segment_length or 1
        return max(n_tokens // n - 1, 0) * n
    return n_tokens


def plan_slices(stop: int, n_slices: int, *, align: int = 1, min_length: int = 1,
                start: int = 0) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into at most ``n_slices`` contiguous slices of near-equal
    length, boundaries on multiples of ``align`` (the block size, so that no block of
    a confidence-interval run is split) and no slice shorter than ``min_length``
    unless the whole range is."""
    if n_slices < 1:
        raise DistributedError(f"the number of slices must be positive, got {n_slices}")
    if align < 1:
        raise DistributedError(f"slice alignment must be positive, got {align}")
    length = stop - start
    if length <= 0:
        return []
    n = max(1, min(n_slices, length // max(min_length, 1) or 1))
    cuts = [start]
    for i in range(1, n):
        cut = start + round(i * length / n / align) * align
        if cuts[-1] < cut < stop:
            cuts.append(cut)
    cuts.append(stop)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def boundary_states(engine: StateGradientEngine, starts: Sequence[int], chunk: int = 65536
                    ) -> dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """The recurrent state before each of ``starts``, as ``engine.initial_state`` gives
    it, from ONE forward pass over the text (chunked so memory stays bounded) rather
    than one pass per slice.  Returned on the CPU."""
    wanted = sorted(set(int(s) for s in starts))
    out: dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
    if not wanted:
        return out
    L = engine.layer + 1
    lstm = engine.cell == "lstm"

    def snapshot(state) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        if state is None:
            zeros = torch.zeros(engine.H, dtype=engine.opts.dtype)
            return [(zeros.clone(), zeros.clone() if lstm else None) for _ in range(L)]
        if lstm:
            h, c = state
            return [(h[layer, 0].cpu().clone(), c[layer, 0].cpu().clone()) for layer in range(L)]
        return [(state[layer, 0].cpu().clone(), None) for layer in range(L)]

    with torch.no_grad():
        import copy

        rnn = copy.deepcopy(engine.module.rnn).to(engine.device, engine.opts.dtype).eval()
        state = None
        pos = 0
        for target in wanted:
            while pos < target:
                hi = min(target, pos + chunk)
                ids = torch.as_tensor(engine.tokens[pos:hi], device=engine.device)
                _, state = rnn(engine.embedding[ids].unsqueeze(1), state)
                pos = hi
            out[target] = snapshot(state)
    return out


def _fingerprint(engine: StateGradientEngine, usable: int) -> dict[str, Any]:
    """What must agree for a parts directory to belong to this run (the device and the
    number of ranks may change between runs)."""
    o = engine.opts
    options = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if f.name != "device"}
    options["dtype"] = str(o.dtype)
    options["layer"] = engine.layer
    tokens = np.ascontiguousarray(engine.tokens, dtype=np.int32)
    return {
        "model": engine.model_identity,
        "text_sha256": hashlib.sha256(tokens.tobytes()).hexdigest(),
        "tokens": int(len(tokens)),
        "usable": int(usable),
        "options": json.loads(json.dumps(options, default=str)),
        "classes": list(engine.classes.names),
        "class_membership": hashlib.sha256(np.ascontiguousarray(engine.classes.membership)
                                           .tobytes()).hexdigest(),
    }


def _part_name(i: int, a: int, b: int) -> str:
    return f"slice-{i:05d}-{a}-{b}.h5"


def _load_or_make_plan(parts: Path, fingerprint: dict[str, Any], slices: list[tuple[int, int]]
                       ) -> tuple[list[tuple[int, int]], bool]:
    """The slice plan stored in ``parts`` (a rerun keeps its slicing, whatever the number of
    ranks now), or ``slices`` written there.  Returns (plan, whether it was reused)."""
    plan_file = parts / "plan.json"
    if plan_file.is_file():
        try:
            stored = json.loads(plan_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DistributedError(f"{plan_file} is unreadable ({exc}); delete {parts} to start "
                                   "afresh") from None
        if stored.get("format") != PLAN_FORMAT or stored.get("fingerprint") != fingerprint:
            theirs = stored.get("fingerprint") or {}
            diff = sorted(k for k in fingerprint if k != "options" and fingerprint[k] != theirs.get(k))
            ours_o, theirs_o = fingerprint["options"], theirs.get("options") or {}
            diff += sorted(f"{k} ({theirs_o.get(k)!r} there, {v!r} now)" for k, v in ours_o.items()
                           if theirs_o.get(k) != v)
            raise DistributedError(
                f"{parts} holds slices of a different run (differs in: {', '.join(diff) or 'format'}); "
                "delete it, or choose another output file")
        return [tuple(s) for s in stored["slices"]], True  # type: ignore[misc]
    parts.mkdir(parents=True, exist_ok=True)
    tmp = plan_file.with_name("plan.json.tmp")
    tmp.write_text(json.dumps({"format": PLAN_FORMAT, "version": PLAN_VERSION,
                               "fingerprint": fingerprint, "slices": slices}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, plan_file)
    return slices, False


def _finished_parts(parts: Path, plan: list[tuple[int, int]]) -> list[int]:
    """Slices whose part file this rank can see and that look complete (the file is
    renamed into place only once written, so presence plus a readable header suffices)."""
    import h5py

    done = []
    for i, (a, b) in enumerate(plan):
        path = parts / _part_name(i, a, b)
        if not path.is_file():
            continue
        try:
            with h5py.File(path, "r") as f:
                meta = json.loads(f.attrs["metadata"])
        except (OSError, KeyError, ValueError):
            continue  # a damaged part is computed again
        if meta.get("slice") == {"start": a, "stop": b}:
            done.append(i)
    return done


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
    import socket

    opts = dataclasses.replace(options, device=comm.device(options.device))
    parts = Path(parts_dir) if parts_dir is not None else output.with_name(output.name + ".parts")
    with torch.no_grad(), matmul_precision(tf32):
        engine = StateGradientEngine(model, tokens, opts, classes)
        usable = usable_positions(len(engine.tokens), opts)
        stop = usable if stop is None else min(stop, usable)
        if not 0 <= start < stop:
            raise EngineError(f"no start positions in [{start}, {stop}): the text has {usable} "
                              f"usable positions ({len(engine.tokens)} tokens)")
        fingerprint = _fingerprint(engine, usable) | {"range": [int(start), int(stop)]}
        plan_or_error: Any = None
        if comm.is_main:
            wanted = n_slices or max(1, slices_per_rank) * comm.world_size
            fresh = plan_slices(stop, wanted, align=opts.block_size or 1,
                                min_length=8 * opts.max_delay, start=start)
            try:
                plan_or_error = _load_or_make_plan(parts, fingerprint, fresh)
            except (DistributedError, OSError) as exc:
                plan_or_error = f"{type(exc).__name__}: {exc}"
        plan_or_error = comm.broadcast(plan_or_error)
        if isinstance(plan_or_error, str):
            raise DistributedError(f"rank 0: {plan_or_error}")
        plan, reused = plan_or_error

        # Which finished slices each rank sees; a slice is loaded by one rank that sees it.
        seen = comm.all_gather(_finished_parts(parts, plan) if parts.is_dir() else [])
        owners: dict[int, int] = {}
        for i in range(len(plan)):
            seers = [r for r in range(comm.world_size) if i in seen[r]]
            if seers:
                owners[i] = seers[i % len(seers)]
        todo = [i for i in range(len(plan)) if i not in owners]
        if reused:
            say(f"resuming: {len(owners)} of {len(plan)} slices already finished in {parts}")
        say(f"{stop - start:,} start positions in {len(plan)} slices over {comm.world_size} rank(s)")

        # Exact states at the unfinished slices' starts: one forward pass, on rank 0.
        states = boundary_states(engine, [plan[i][0] for i in todo]) if comm.is_main else None
        states = comm.broadcast(states)

        claim = _work_queue(comm, todo)
        host = socket.gethostname()
        report = RankReport(comm.rank, host, [], [], 0, 0.0)
        local: GradientResult | None = None
        metadata: dict[str, Any] | None = None
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        current: int | None = None
        try:
            for i, r in owners.items():
                if r != comm.rank:
                    continue
                current = i
                part = load_result(parts / _part_name(i, *plan[i]))
                local, metadata = _add(local, part, blocks), metadata or part.metadata
                report.loaded.append(i)
            while (i := claim()) is not None:
                current = i
                a, b = plan[i]
                t0 = time.perf_counter()
                part = engine.run(a, b, initial_state=states[a], progress=progress and comm.is_main,
                                  checkpoint_path=parts / f"slice-{i:05d}.ckpt",
                                  checkpoint_every=checkpoint_every, text_info=text_info,
                                  keep_checkpoint=True)
                part.save(parts / _part_name(i, a, b))
                # Only once the slice's result is in place (a kill in between resumes).
                engine.remove_running_state(parts / f"slice-{i:05d}.ckpt")
                report.seconds += time.perf_counter() - t0
                report.positions += b - a
                report.computed.append(i)
                local, metadata = _add(local, part, blocks), metadata or part.metadata
            current = None
        except Exception as exc:  # reported by rank below, so that no rank waits forever
            report.error = f"{type(exc).__name__}: {exc}"
            report.failed_slice = current
            if not comm.active:
                raise
            traceback.print_exc()

        reports: list[RankReport] = comm.all_gather(report)
        failed = [r for r in reports if r.error]
        if failed:
            lines = [f"rank {r.rank} ({r.host}) failed"
                     + (f" on slice {r.failed_slice} {list(plan[r.failed_slice])}"
                        if r.failed_slice is not None else "") + f": {r.error}" for r in failed]
            raise DistributedError("; ".join(lines) + f". Finished slices are kept in {parts}; "
                                   "run the same command again to resume")

        result = _reduce(comm, engine, local, blocks, metadata, start, stop)
        slow = _slow_ranks(reports, slow_factor)
        elapsed = time.perf_counter() - started
        if comm.is_main:
            assert result is not None
            if run_info is not None:
                result.metadata["run"] = dict(run_info) | {"seconds": round(elapsed, 3)}
            if extra_metadata:
                result.metadata.update(extra_metadata)
            result.metadata.update({
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
            })
            result.save(output)
            say(f"result written to {output}")
            for r in reports:
                say(f"rank {r.rank} ({r.host}): {len(r.computed)} slices computed, "
                    f"{len(r.loaded)} loaded, {r.positions:,} positions in {r.seconds:.1f} s"
                    + (f" ({r.rate:,.0f} positions/s)" if r.positions else ""))
            for message in slow.values():
                say(message)
        comm.barrier()  # the result exists before any rank returns
        if comm.is_main and not keep_parts:
            shutil.rmtree(parts, ignore_errors=True)
    return DistributedRun(result if comm.is_main else None, output, comm.rank, comm.world_size,
                          plan, reports, slow, len(owners), elapsed)


def _add(total: GradientResult | None, part: GradientResult,
         blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> GradientResult:
    """Running sum of this rank's slices; blocks are set aside (they are concatenated,
    not added)."""
    if part.has_blocks:
        # Into memory now: a part read from a file may be deleted before the reduction.
        blocks.append((part.block_starts, part.block_counts, np.asarray(part.block_sums)))
    if total is None:
        return GradientResult(part.sums.copy(), part.counts.copy(), list(part.classes),
                              list(part.vocab), dict(part.metadata))
    problems = total.compatible(dataclasses.replace(part, block_sums=None, block_counts=None,
                                                    block_starts=None))
    if problems:
        raise ResultError("slices of one run disagree: " + "; ".join(problems))
    total.sums += part.sums
    total.counts += part.counts
    # The start positions actually summed, slice by slice (an overlap is an error here too).
    total.metadata["coverage"] = merged_coverage(total.metadata, part.metadata, True)
    return total


def _work_queue(comm: Communicator, todo: list[int]) -> Callable[[], int | None]:
    """Hand out ``todo`` one slice at a time: an atomic counter in the rendezvous's
    key-value store is a shared queue, so a slow rank simply takes fewer slices.
    One process takes them all in order; in a process group the caller initialised
    (no store of ours) rank r takes every world-size-th slice from the r-th."""
    if not comm.active or comm.store is None:
        it = iter(todo[comm.rank::comm.world_size] if comm.active else todo)
        return lambda: next(it, None)
    # A fresh key per call: several runs may share one process group.
    key = "stategrad/queue/" + comm.broadcast(uuid.uuid4().hex)
    store = comm.store

    def claim() -> int | None:
        n = store.add(key, 1) - 1
        return todo[n] if n < len(todo) else None

    return claim


def _reduce(comm: Communicator, engine: StateGradientEngine, local: GradientResult | None,
            blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
            metadata: dict[str, Any] | None, start: int, stop: int) -> GradientResult | None:
    """Sums and counts of all ranks added on rank 0; blocks gathered there one at a time."""
    D, C, H, E = engine.D, engine.C, engine.H, engine.E
    sums = local.sums if local is not None else np.zeros((D, C, H, E))
    counts = local.counts if local is not None else np.zeros((D, C), dtype=np.int64)
    sums = comm.reduce_sum(np.ascontiguousarray(sums, dtype=np.float64))
    counts = comm.reduce_sum(np.ascontiguousarray(counts, dtype=np.int64))
    all_blocks = _gather_blocks(comm, blocks)
    if local is not None and metadata is not None:  # what this rank's slices covered together
        metadata = metadata | {"coverage": local.metadata.get("coverage")}
    metas = comm.all_gather(metadata)
    if not comm.is_main:
        return None
    meta = dict(next(m for m in metas if m is not None))
    meta["slice"] = {"start": int(start), "stop": int(stop)}
    meta["coverage"] = _union_of_coverage([m for m in metas if m is not None])
    sampling = dict(meta.get("sampling") or {})
    sampling["starts_used"] = int(counts[0, 0])
    meta["sampling"] = sampling
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    kwargs: dict[str, Any] = {}
    if all_blocks:
        starts = np.concatenate([b[0] for b in all_blocks])
        order = np.argsort(starts, kind="stable")
        kwargs = dict(block_starts=starts[order],
                      block_counts=np.concatenate([b[1] for b in all_blocks])[order],
                      block_sums=np.concatenate([b[2] for b in all_blocks])[order])
    vocab = local.vocab if local is not None else (engine.vocab or [])
    return GradientResult(sums, counts, list(engine.classes.names), list(vocab), meta, **kwargs)


def _union_of_coverage(metas: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The start positions all ranks summed (None when a slice had no record)."""
    coverage = metas[0].get("coverage")
    for m in metas[1:]:
        coverage = merged_coverage({"coverage": coverage}, m, True)
    return coverage


def _gather_blocks(comm: Communicator, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-block sums can be large (B x D x C x H x E); they travel to rank 0 as tensors,
    one slice's blocks at a time, rather than as one pickled object."""
    if not comm.active:
        return blocks
    shapes = comm.all_gather([(b[0].tolist(), b[1].tolist(), b[2].shape) for b in blocks])
    if not comm.is_main:
        for _, _, sums in blocks:
            dist.send(torch.from_numpy(np.ascontiguousarray(sums, dtype=np.float32)), dst=0)
        return []
    out = list(blocks)
    for r in range(1, comm.world_size):
        for starts, counts, shape in shapes[r]:
            buf = torch.empty(shape, dtype=torch.float32)
            dist.recv(buf, src=r)
            out.append((np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64),
                        buf.numpy()))
    return out


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
    "boundary_states",
    "compute_state_gradients_distributed",
    "plan_slices",
    "precision_error",
    "usable_positions",
]
