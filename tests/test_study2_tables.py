"""Two things the study's tables (``experiments/study2/tables.py``) must not overstate:
the wall time of a run that was interrupted (training time comes from the trainer's
per-epoch times, which a resumed run keeps; a gradient run that resumed is shown as a
lower bound, since only its last part was timed), and a property's place among random
directions when one seed of several carries the mean.
"""

from __future__ import annotations

import sys
from pathlib import Path

STUDY2 = Path(__file__).resolve().parents[1] / "experiments" / "study2"
sys.path.insert(0, str(STUDY2))
import tables  # noqa: E402


def _model(folder: Path, resumed: bool) -> Path:
    folder.mkdir(parents=True)
    # 4 epochs of 90 s; the run was killed after epoch 3 and resumed, so timings.tsv holds
    # only the last 90 s of training and the gradients' last 60 s.
    rows = [f"{e},1.0,200.0,190.0,3000.0,90.0,True" for e in range(1, 5)]
    (folder / "metrics.csv").write_text(
        "epoch,learning_rate,train_ppl,valid_ppl,tokens_per_s,seconds,best\n" + "\n".join(rows) + "\n")
    (folder / "timings.tsv").write_text("train\t90.0\tstategrad train\n"
                                        "gradients ptb.valid hidden\t60.0\tstategrad gradients\n"
                                        "analyse\t120.0\tpython analyse.py\n")
    (folder / "ppl_valid.txt").write_text("valid perplexity: 171.5 (model best.pt)\n")
    log = "resuming from gradients.h5.partial\n" if resumed else ""
    (folder / "gradients_hidden.log").write_text(log + "737,150 matrices in 60.0 s\n")
    return folder


def _row(tmp_path: Path, resumed: bool) -> list[str]:
    folder = _model(tmp_path / f"lstm_128h_s1_wsj100_{resumed}", resumed)
    lines = tables.perplexity_table({("lstm", 128, "wsj100"): {1: folder}})
    return [c.strip() for c in lines[-1].strip("|").split("|")]


def test_training_time_keeps_the_epochs_before_a_resume(tmp_path):
    row = _row(tmp_path, resumed=True)
    assert row[4] == "4"                   # epochs
    assert row[5] == "6"                   # 4 x 90 s, not the 90 s timed after the resume
    assert row[6] == ">=1"                 # gradients: only the part after the resume
    assert row[8] == "2"                   # analysis


def test_a_gradient_run_that_did_not_resume_is_not_marked(tmp_path):
    assert _row(tmp_path, resumed=False)[6] == "1"


def _property_model(folder: Path, rel: float, rng) -> Path:
    """A model whose one property keeps ``rel`` of s_1 at every delay, beside 50 random
    directions spread evenly over [0, 0.3] (95th percentile about 0.285)."""
    import json

    import numpy as np

    folder.mkdir(parents=True)
    D, B, N = 51, 20, 50
    curve = np.full((D, 1), rel)
    null = np.tile(np.linspace(0, 0.3, N), (D, 1)) + 1e-4 * rng.standard_normal((D, N))
    np.savez(folder / "measures_hidden.npz", prop_abs=curve, prop_abs_reps=np.tile(curve, (B, 1, 1)),
             prop_rel=curve, prop_rel_reps=np.tile(curve, (B, 1, 1)), prop_valid=np.ones((B, D), bool),
             prop_null_abs=null + 1, prop_null_rel=null)
    (folder / "summary_hidden.json").write_text(json.dumps({"classes": ["all"],
                                                            "properties": [{"name": "nns_nn"}]}))
    return folder


def test_the_property_table_says_how_many_seeds_are_beyond_their_random_directions(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    # One seed far beyond its random 95th percentile lifts the mean over three seeds
    # (0.3) above the mean percentile (0.285); the table must say it is one seed of three.
    seeds = {s: _property_model(tmp_path / f"one{s}", 0.5 if s == 1 else 0.2, rng) for s in (1, 2, 3)}
    row = next(x for x in tables.property_table({("lstm", 128, "wsj100"): seeds}) if x.startswith("| nns_nn"))
    assert row.count("1/3 seeds above") == 6 and "rel 0.3 " in row
    seeds = {s: _property_model(tmp_path / f"all{s}", 0.5, rng) for s in (1, 2, 3)}
    row = next(x for x in tables.property_table({("lstm", 128, "wsj100"): seeds}) if x.startswith("| nns_nn"))
    assert row.count("3/3 seeds above") == 6


def _decay_model(folder: Path, state: str, curve) -> None:
    """Measures of class ``all`` following ``curve`` (delays 0-99), far above a floor."""
    import json

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    s = np.asarray(curve, dtype=np.float64)[:, None]
    B = 20
    np.savez(folder / f"measures_{state}.npz", sv_type=s, sv_type_reps=np.tile(s, (B, 1, 1)),
             sv_type_valid=np.ones((B, len(s), 1), bool), sv_type_floor=np.full_like(s, 1e-30))
    (folder / f"summary_{state}.json").write_text(json.dumps({"classes": ["all"]}))


def test_the_decay_table_fits_the_held_out_text_too_and_tells_the_shapes_apart(tmp_path):
    import numpy as np

    d = np.arange(100)
    folder = tmp_path / "lstm_128h_s1_brownwsjsize"
    # PTB valid: a power law (S(d) = 2 d^-1.5, S(0) = 4); held-out Brown: an exponential.
    _decay_model(folder, "hidden", np.where(d == 0, 4.0, 2.0 * np.maximum(d, 1) ** -1.5))
    _decay_model(folder, "brownheld_hidden", 4.0 * 0.8 ** d)
    rows = {r.split("|")[2].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in tables.decay_table({("lstm", 128, "brownwsjsize"): {1: folder}})[2:]}
    assert set(rows) == {"hidden", "brownheld_hidden"}
    power, held = rows["hidden"], rows["brownheld_hidden"]
    assert float(power[4]) > 0.999 > float(power[5]) and power[6] == "-1.50"
    assert float(held[5]) > 0.999 > float(held[4])
    assert float(power[9]) == float(f"{2 * 10 ** -1.5 / 4:.3g}")   # S(10) / S(0)
    assert float(held[10]) == float(f"{0.8 ** 50:.3g}")            # S(50) / S(0)
