"""The study's comparison of configurations (``experiments/study2/configs.py``), tested for
what it promises on simulated studies with a known answer: it finds a configuration that
keeps more, and it rarely calls a difference where configurations differ only by the
training run and the text.

A simulated model has, per class c, the memory curve S_c(d) = (1 + d)^(-k_c / 2); another
training run moves every k_c a little (the model-to-model spread), and all models read
the same 20 blocks of text, whose effects they share (a paired comparison cancels them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

STUDY2 = Path(__file__).resolve().parents[1] / "experiments" / "study2"
sys.path.insert(0, str(STUDY2))
from measures import Measures  # noqa: E402

import configs  # noqa: E402

CLASSES = ["all", *configs.SEL_CLASSES]
D, B = 12, 20
RUN_SD = 0.03  # run-to-run spread of the decay exponents


def _model(folder: Path, k: np.ndarray, text: np.ndarray, rng, floor: float = 0.0) -> Measures:
    """One model's measures file: block values of S_c(d) with the text's effects."""
    folder.mkdir(parents=True)
    d = np.arange(D)[:, None]
    curves = (1.0 + d) ** (-k[None] / 2)
    x = curves[None] * np.exp(text + 0.01 * rng.standard_normal((B, D, len(CLASSES))))
    est = x.mean(0)
    reps = (x.sum(0)[None] - x) / (B - 1)
    np.savez(folder / "measures_hidden.npz", sv_type=est, sv_type_reps=reps,
             sv_type_valid=np.ones(reps.shape, bool), counts=np.full(est.shape, 100),
             sv_type_floor=np.full(est.shape, floor))
    (folder / "summary_hidden.json").write_text(json.dumps({"classes": CLASSES}))
    return Measures(folder, "hidden")


def _study(root: Path, rng, shift: float, seeds=(3, 3)) -> dict:
    """Two configurations: the reference and one whose exponents are lower by ``shift``
    (0: the same configuration trained again)."""
    k0 = np.linspace(1.0, 1.6, len(CLASSES))
    text = 0.1 * rng.standard_normal((B, D, len(CLASSES)))
    out = {}
    for cfg, n, s in ((("lstm", 128, "wsj100"), seeds[0], 0.0), (("lstm", 128, "wsj25"), seeds[1], shift)):
        out[cfg] = [_model(root / f"{cfg[2]}_{i}", k0 - s + RUN_SD * rng.standard_normal(len(k0)), text, rng)
                    for i in range(n)]
    return out


def test_a_configuration_that_keeps_more_is_found(tmp_path):
    rng = np.random.default_rng(1)
    study = _study(tmp_path, rng, shift=0.3)
    cfg, ref = ("lstm", 128, "wsj25"), ("lstm", 128, "wsj100")
    assert configs.reference(cfg, study) == ref
    r = configs.difference(study, cfg, ref, configs.memory)
    assert np.all(r["estimate"][2:] > 0)
    assert r["differs"][2:].all()
    assert r["df"] == 4


def test_one_seed_borrows_the_pooled_spread(tmp_path):
    rng = np.random.default_rng(2)
    study = _study(tmp_path, rng, shift=0.3, seeds=(3, 1))
    r = configs.difference(study, ("lstm", 128, "wsj25"), ("lstm", 128, "wsj100"), configs.memory)
    assert r["df"] == 2
    # the one-seed side borrows the reference's spread: t_2 * SD(3 seeds) * sqrt(1 + 1/3)
    ref_values = np.array([configs.memory(m)[0] for m in study[("lstm", 128, "wsj100")]])
    expected = 4.302653 * ref_values.std(axis=0, ddof=1) * np.sqrt(1 + 1 / 3)
    np.testing.assert_allclose(r["yardstick"][1:], expected[1:], rtol=1e-5)


def test_the_yardstick_ignores_configurations_not_compared(tmp_path):
    """A third configuration whose runs spread far more (another architecture) leaves the
    yardstick of the two compared unchanged: only their own seeds are pooled."""
    rng = np.random.default_rng(6)
    study = _study(tmp_path, rng, shift=0.3, seeds=(3, 1))
    cfg, ref = ("lstm", 128, "wsj25"), ("lstm", 128, "wsj100")
    before = configs.difference(study, cfg, ref, configs.memory)
    k0 = np.linspace(1.0, 1.6, len(CLASSES))
    text = 0.1 * rng.standard_normal((B, D, len(CLASSES)))
    study[("rnn", 128, "wsj100")] = [_model(tmp_path / f"rnn_{i}", k0 + 10 * RUN_SD * rng.standard_normal(len(k0)),
                                            text, rng) for i in range(3)]
    after = configs.difference(study, cfg, ref, configs.memory)
    assert after["df"] == before["df"] == 2
    np.testing.assert_array_equal(after["yardstick"], before["yardstick"])
    # pooling everything would have taken the wide spread in
    wide, df = configs.pooled_sd(study, configs.memory)
    narrow, _ = configs.pooled_sd(study, configs.memory, among=(cfg, ref))
    assert df == 4 and np.all(wide[2:] > 2 * narrow[2:])


def test_another_training_run_is_rarely_called_a_difference(tmp_path):
    """Over 60 simulated studies with no difference between the configurations, the
    memory and selectiveness are called different at a few delays in at most 10% (the
    two checks together aim at no more than 5%)."""
    rng = np.random.default_rng(3)
    calls = {"memory": 0, "selectiveness": 0}
    n = 60
    for i in range(n):
        study = _study(tmp_path / str(i), rng, shift=0.0)
        for key in calls:
            r = configs.difference(study, ("lstm", 128, "wsj25"), ("lstm", 128, "wsj100"),
                                   configs.SUMMARIES[key][0])
            calls[key] += int(r["differs"][[2, 5, 10]].any())
    for key, count in calls.items():
        assert count / n <= 0.10, (key, count)


def test_selectiveness_is_zero_when_every_class_keeps_the_same_share(tmp_path):
    rng = np.random.default_rng(4)
    m = _model(tmp_path / "m", np.full(len(CLASSES), 1.2), np.zeros((B, D, len(CLASSES))), rng)
    est, _ = configs.selectiveness(m)
    assert np.all(est[1:] < 0.02)
    m2 = _model(tmp_path / "m2", np.linspace(0.8, 1.8, len(CLASSES)), np.zeros((B, D, len(CLASSES))), rng)
    est2, _ = configs.selectiveness(m2)
    assert np.all(est2[2:] > 5 * est[2:])
    assert np.all(np.diff(est2[1:]) > 0)  # exponents apart: the classes drift further apart


def test_selectiveness_stops_where_a_class_reaches_its_noise_floor(tmp_path):
    rng = np.random.default_rng(5)
    k = np.linspace(0.8, 1.8, len(CLASSES))
    m = _model(tmp_path / "m", k, np.zeros((B, D, len(CLASSES))), rng, floor=0.22)
    est, reps = configs.selectiveness(m)
    # the class that decays fastest, (1 + d)^(-0.9), falls below 0.22 at d = 5 (0.235 at 4)
    below = (1.0 + np.arange(D)) ** (-k[-1] / 2) <= 0.22
    first = int(np.argmax(below))
    assert np.isfinite(est[:first]).all() and np.isnan(est[first:]).all()
    assert np.isnan(reps[:, first:]).all()


def test_floor_reached_holds_from_the_first_delay_any_column_is_noise():
    from measures import floor_reached

    values = np.array([[1.0, 2.0], [0.5, 0.4], [0.2, 0.05], [0.3, 0.5], [0.0, 0.0]])
    floor = np.full_like(values, 0.1)
    # column 2 is within its floor at delay 2; later values above it do not undo that
    np.testing.assert_array_equal(floor_reached(values, floor), [False, False, True, True, True])
    # a value that underflowed to 0 counts even with no floor
    np.testing.assert_array_equal(floor_reached(values[:, 0], np.zeros(5)), [False] * 4 + [True])
