"""Distributed runs: 2 local worker processes (gloo on 127.0.0.1) against one process.

The workers are started with ``torch.multiprocessing.spawn`` and join through the same
env:// rendezvous torchrun uses (MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE/LOCAL_RANK),
or through an explicit tcp:// group; they report back through files.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stategrad.comm import DistributedError, is_distributed_launch, matmul_precision
from stategrad.data import ClassSet
from stategrad.gradients import (
    EngineOptions,
    StateGradientEngine,
    compute_state_gradients,
    compute_state_gradients_distributed,
    load_result,
    plan_slices,
    precision_error,
)
from stategrad.lm import RNNLM, ModelSpec, train, validate_config

V, E, H = 13, 3, 5
WORLD = 2


def make_model(cell: str = "lstm", layers: int = 2) -> RNNLM:
    """A float32 model, as users have them, run in float64 below: slices start from the
    state the fused module computes, one process carries the engine's own, and both must
    widen the weights before any arithmetic to agree to 1e-12.  The values are float64
    draws rounded to float32 (every mantissa bit used, hidden biases non-zero)."""
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=layers,
                     cell=cell)
    model = RNNLM(spec).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-0.6, 0.6))
    return model


def make_text(n: int = 240) -> np.ndarray:
    return np.random.default_rng(4).integers(0, V, size=n)


def make_classes() -> ClassSet:
    member = np.random.default_rng(1).random((V, 3)) < 0.4
    member[:, 0] = True
    return ClassSet(["all", "a", "b"], member)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scenarios(rank: int, port: int, port2: int, out: str) -> None:
    """Every multi-process scenario in one launch (starting Python + torch in two
    processes costs several seconds on a small machine).  A failing scenario writes
    its traceback, so that the other tests still run and the failure is shown."""
    root = Path(out)
    steps = [("gradients", lambda: gradient_worker(rank, port, str(root / "gradients")))]
    steps.append(("group", lambda: tcp_group(rank, port2)))
    steps.append(("resume", lambda: failing_then_resuming_worker(rank, str(root / "resume"))))
    steps.append(("training", lambda: training_worker(rank, str(root / "corpus"),
                                                      str(root / "ddp"))))
    for name, step in steps:
        (root / name).mkdir(exist_ok=True)
        try:
            step()
        except BaseException:  # noqa: BLE001 - reported to the parent test
            import traceback

            (root / name / f"error{rank}.txt").write_text(traceback.format_exc())
            if name in ("gradients", "group"):
                break
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Path:
    """Run :func:`scenarios` in WORLD worker processes once for this module."""
    root = tmp_path_factory.mktemp("distributed")
    write_corpus(root / "corpus")
    mp.spawn(scenarios, args=(free_port(), free_port(), str(root)), nprocs=WORLD, join=True)
    return root


def outcome(root: Path, name: str) -> Path:
    errors = sorted((root / name).glob("error*.txt"))
    if errors:
        pytest.fail(f"scenario {name} failed in a worker:\n" + errors[0].read_text())
    return root / name


def torchrun_env(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def tcp_group(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))


# --- state gradients ----------------------------------------------------------------------

OPTIONS = dict(max_delay=6, dtype=torch.float64, block_size=20)


def gradient_worker(rank: int, port: int, out: str) -> None:
    torchrun_env(rank, port)
    assert is_distributed_launch()
    run = compute_state_gradients_distributed(
        make_model(), make_text(), EngineOptions(**OPTIONS), make_classes(),
        out_path=Path(out) / "result.h5", slices_per_rank=4)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({
        "rank": run.rank, "world": run.world_size, "has_result": run.result is not None,
        "computed": [r.computed for r in run.reports], "slices": run.slices}))


def test_two_ranks_equal_one_process(launched):
    tmp_path = outcome(launched, "gradients")
    single = compute_state_gradients(make_model(), make_text(), classes=make_classes(), **OPTIONS)
    merged = load_result(tmp_path / "result.h5")
    np.testing.assert_array_equal(merged.counts, single.counts)
    scale = np.abs(single.sums).max()
    assert np.abs(merged.sums - single.sums).max() / scale < 1e-12
    np.testing.assert_array_equal(merged.block_starts, single.block_starts)
    np.testing.assert_array_equal(merged.block_counts, single.block_counts)
    np.testing.assert_allclose(merged.block_sums, single.block_sums, rtol=1e-6, atol=1e-9)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["has_result"] for r in reports] == [True, False]  # written once, by rank 0
    computed = sorted(i for lst in reports[0]["computed"] for i in lst)
    # 8 slices asked for (4 per rank), 5 made: none shorter than 8 x max_delay = 48
    assert computed == list(range(len(reports[0]["slices"]))) == list(range(5))
    # slice boundaries fall on block boundaries
    assert all(a % 20 == 0 for a, _ in reports[0]["slices"])
    meta = merged.metadata
    assert meta["distributed"]["world_size"] == WORLD and meta["slice"] == {"start": 0, "stop": 240}
    assert meta["coverage"][0]["ranges"] == [[0, 240]]  # the slices of both ranks, joined
    assert not (tmp_path / "result.h5.parts").exists()  # parts removed once the result exists


def failing_then_resuming_worker(rank: int, out: str) -> None:
    model, text, classes = make_model("gru", 2), make_text(), make_classes()
    opts = EngineOptions(max_delay=6, state="hidden", dtype=torch.float64)
    original_run = StateGradientEngine.run
    calls = {"n": 0}

    def flaky_run(self, start=0, stop=None, **kw):
        calls["n"] += 1
        if rank == 1 and calls["n"] == 2:
            raise RuntimeError("simulated worker failure")
        return original_run(self, start, stop, **kw)

    StateGradientEngine.run = flaky_run
    try:
        compute_state_gradients_distributed(model, text, opts, classes, out_path=Path(out) / "r.h5",
                                            n_slices=6)
        message = "no error"
    except DistributedError as exc:
        message = str(exc)
    finally:
        StateGradientEngine.run = original_run
    parts = sorted(p.name for p in (Path(out) / "r.h5.parts").glob("slice-*.h5"))
    run = compute_state_gradients_distributed(model, text, opts, classes, out_path=Path(out) / "r.h5",
                                              n_slices=6)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(
        {"message": message, "parts": parts, "resumed": run.resumed_slices,
         "loaded": [r.loaded for r in run.reports]}))


def test_failed_rank_is_named_and_a_rerun_resumes(launched):
    tmp_path = outcome(launched, "resume")
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for r in reports:  # every rank learns which rank failed, on which slice
        assert "rank 1" in r["message"] and "simulated worker failure" in r["message"]
        assert "run the same command again" in r["message"]
    assert "rank 0" not in reports[0]["message"].split(";")[0].split("failed")[0]
    # rank 1 finished one slice; rank 0 went on with the queue: several finished slices
    assert 1 < len(reports[0]["parts"]) < 6
    assert reports[0]["resumed"] == len(reports[0]["parts"])
    assert sum(len(x) for x in reports[0]["loaded"]) == len(reports[0]["parts"])
    single = compute_state_gradients(make_model("gru", 2), make_text(), max_delay=6,
                                     state="hidden", classes=make_classes(), dtype=torch.float64)
    merged = load_result(tmp_path / "r.h5")
    np.testing.assert_array_equal(merged.counts, single.counts)
    assert np.abs(merged.sums - single.sums).max() / np.abs(single.sums).max() < 1e-12
    assert merged.metadata["resumed"] is True


# --- one process: planning, resume, refusal, precision ----------------------------------

def test_plan_slices_covers_the_range_on_aligned_cuts():
    plan = plan_slices(1000, 7, align=50, min_length=10)
    assert plan[0][0] == 0 and plan[-1][1] == 1000
    assert all(b == c for (_, b), (c, _) in zip(plan[:-1], plan[1:], strict=True))
    assert all(a % 50 == 0 for a, _ in plan) and len(plan) == 7
    assert plan_slices(30, 8, min_length=12) == [(0, 15), (15, 30)]
    assert plan_slices(5, 3, min_length=100) == [(0, 5)]
    with pytest.raises(DistributedError, match="positive"):
        plan_slices(10, 0)


def test_one_process_keeps_parts_and_refuses_another_runs_parts(tmp_path):
    model, text = make_model(), make_text(120)
    out = tmp_path / "g.h5"
    run = compute_state_gradients_distributed(model, text, EngineOptions(max_delay=4,
                                              dtype=torch.float64), out_path=out, n_slices=3,
                                              keep_parts=True)
    assert run.world_size == 1 and len(run.slices) == 3
    assert len(list((tmp_path / "g.h5.parts").glob("slice-*.h5"))) == 3
    again = compute_state_gradients_distributed(model, text, EngineOptions(max_delay=4,
                                                dtype=torch.float64), out_path=out, n_slices=5,
                                                keep_parts=True)
    assert again.resumed_slices == 3 and again.slices == run.slices  # the stored plan wins
    np.testing.assert_array_equal(again.result.sums, run.result.sums)
    with pytest.raises(DistributedError, match=r"different run .*max_delay \(4 there, 5 now\)"):
        compute_state_gradients_distributed(model, text, EngineOptions(max_delay=5,
                                            dtype=torch.float64), out_path=out)


def test_precision_error_is_reported_against_float64():
    model = make_model("lstm", 1).float()
    err = precision_error(model, make_text(200), EngineOptions(max_delay=5, dtype=torch.float32),
                          positions=100)
    assert 0 < err["max_relative_error"] < 1e-5 and err["positions"] == 100
    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_precision(True):
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before


# --- training -----------------------------------------------------------------------------

def write_corpus(folder: Path) -> Path:
    rng = random.Random(0)
    words = ["the", "a", "cat", "cats", "dog", "dogs", "sees", "see", "big", "old", "park"]
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 500), ("valid", 80), ("test", 80)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(n)]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


def training_config(corpus: Path, save: Path):
    # no dropout and the full softmax: no random draws, so the curves must agree closely
    return validate_config({
        "data": {"path": str(corpus)},
        "model": {"hidden_size": 16, "embedding_size": 8, "dropout": 0.0, "init_scale": 0.1},
        "training": {"batch_size": 8, "num_steps": 10, "max_max_epoch": 2, "max_epoch": 1,
                     "lr_decay": 0.7, "learning_rate": 1.0, "max_grad_norm": 5.0, "seed": 3},
        "output": {"save_path": str(save)},
    })


def training_worker(rank: int, corpus: str, save: str) -> None:
    config = training_config(Path(corpus), Path(save))
    polls = {"n": 0}

    def stop_on_rank_1() -> bool:  # only one rank asks to stop; all must stop together
        polls["n"] += 1
        return rank == 1 and polls["n"] == 7

    first = train(config, progress=False, should_stop=stop_on_rank_1)
    assert first.interrupted
    train(config, resume=True, progress=False)


def test_ddp_training_follows_single_process_training(launched, tmp_path):
    outcome(launched, "training")
    corpus, ddp = launched / "corpus", launched / "ddp"
    torch.set_num_threads(1)
    single = train(training_config(corpus, tmp_path / "one"), progress=False)
    rows = json.loads((ddp / "metrics.json").read_text())
    assert len(rows) == len(single.history) == 2
    for ours, ref in zip(rows, single.history, strict=True):
        assert ours["train_ppl"] == pytest.approx(ref.train_ppl, rel=1e-4)
        assert ours["valid_ppl"] == pytest.approx(ref.valid_ppl, rel=1e-4)
    # the checkpoint holds the whole batch's model, readable by one process
    ddp_params = torch.load(ddp / "last.pt", weights_only=True)["state_dict"]
    one_params = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["state_dict"]
    for name, value in one_params.items():
        np.testing.assert_allclose(ddp_params[name].numpy(), value.numpy(), rtol=1e-3, atol=1e-5)


def test_batch_size_must_divide_among_ranks():
    from stategrad.comm import Communicator
    from stategrad.lm import TrainingSync

    sync = TrainingSync(Communicator(rank=0, world_size=3))
    with pytest.raises(DistributedError, match="batch_size=8 does not divide among 3"):
        sync.local_rows(torch.zeros(5, 8, dtype=torch.long))
    rows = torch.arange(12).view(2, 6)
    assert TrainingSync(Communicator(rank=1, world_size=3)).local_rows(rows).tolist() == [[1, 4],
                                                                                          [7, 10]]


if sys.platform == "win32":  # pragma: no cover - gloo over loopback is tested on Linux/macOS
    pytestmark = pytest.mark.skip(reason="gloo process groups are not tested on Windows")


def test_a_range_of_start_positions_in_slices_equals_one_engine_run(tmp_path):
    model, text, classes = make_model("lstm", 1), make_text(200), make_classes()
    run = compute_state_gradients_distributed(
        model, text, EngineOptions(max_delay=5, dtype=torch.float64, state="hidden"), classes,
        out_path=tmp_path / "r.h5", start=30, stop=170, n_slices=3, run_info={"command": "x"})
    single = compute_state_gradients(model, text, max_delay=5, state="hidden", classes=classes,
                                     dtype=torch.float64, start=30, stop=170)
    saved = load_result(tmp_path / "r.h5")
    np.testing.assert_array_equal(saved.counts, single.counts)
    np.testing.assert_allclose(saved.sums, single.sums, rtol=1e-12, atol=1e-14)
    assert run.slices[0][0] == 30 and run.slices[-1][1] == 170
    assert saved.metadata["slice"] == {"start": 30, "stop": 170}
    assert saved.metadata["run"]["command"] == "x" and "seconds" in saved.metadata["run"]
