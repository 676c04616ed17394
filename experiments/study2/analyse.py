"""Step 4: every measure the second edition reads, for one trained model, as small files.

    python experiments/study2/analyse.py NAME [--run-dir DIR] [--results DIR]

NAME is a model of 02_train.sh whose gradients 03_gradients.sh computed.  Large files (the
model, the HDF5 gradients) stay in RUN_DIR and are lost with it; what the study's tables
and comparisons need is written to ``results/NAME/``:

- ``measures_<state>.npz``: for each statistic, its estimate per (delay, class) and its 20
  delete-one-block jackknife replicates (``<key>`` (D, C), ``<key>_reps`` (B, D, C),
  ``<key>_valid``), so that any paired difference later (class - class, state - state,
  model - model: every model is evaluated on the same text and the same blocks) is formed
  replicate by replicate, and its noise floor ``<key>_floor`` (D, C) where one is drawn.
  Statistics: ``sv_raw``, ``sv_type``, ``sv_token`` (the papers' memory curve, the sum of
  singular values of Gbar_d, of Gbar_d L with the type-weighted L of the original, and
  with token-weighted L), ``identity`` (identity memory, type-weighted L), and per
  property ``prop_<name>`` (the amount kept, |Gbar_d L n|, class ``all``, (D, P)) with
  ``prop_rel`` (the papers' relative memory |Gbar_d L n| / s_1).
- ``summary_<state>.json``: class names and counts, property labels and word counts.
- ``measures_sec20_<state>.npz`` / ``summary_sec20_<state>.json`` (WSJ models; Brown
  models: ``brownheld_``): the memory curves (``sv_*``, with replicates and floors) of the
  token classes of held-out text (WSJ section 20, or the held-out Brown files): universal
  gold tags split into frequency strata (``NOUN@1-100``, ...).

Everything is computed with stategrad's public API.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

import stategrad as sg
from stategrad import analysis
from stategrad.data import read_pos_map

HERE = Path(__file__).resolve().parent

#: Properties: (name, set A tags, set B tags); v = mean embedding of A minus that of B,
#: each word weighted by its count in the training text, words in both sets left out.
PROPERTIES = [
    ("nns_nn", "NNS", "NN"),          # number of common nouns
    ("vbd_vbzp", "VBD", "VBZ,VBP"),   # past vs present tense
    ("nnp_nn", "NNP", "NN"),          # proper vs common noun
    ("jjr_jj", "JJR", "JJ"),          # comparative vs positive adjective
    ("vbn_vbd", "VBN", "VBD"),        # participle vs past tense
]

#: Sign draws of the noise floors (identity memory: half as many).
N_FLIPS = 200
#: The classes whose identity memory gets a noise floor: those the write-up discusses.
FLOOR_CLASSES = {"nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions",
                 "pronouns", "NN", "NNS", "NNP", "VB", "VBD", "JJ", "RB", "IN", "DT"}


def _words_with(pos_map: dict[str, list[str]], tags: str) -> list[str]:
    wanted = set(tags.split(","))
    return [w for w, ts in pos_map.items() if wanted.intersection(ts)]


def _save_reps(out: dict, key: str, reps: analysis.Replicates, col: int | slice = 0) -> None:
    out[key] = reps.estimate[..., col].astype(np.float32)
    out[f"{key}_reps"] = reps.replicates[..., col].astype(np.float32)
    out[f"{key}_valid"] = reps.valid


def _memory(result, out: dict, stats: dict[str, object]) -> None:
    """The papers' memory curve under each normalisation, with replicates and floors."""
    for key, norm in stats.items():
        stat = analysis.singular_values(norm)
        reps = analysis.replicates(result, stat, method="jackknife")
        _save_reps(out, f"sv_{key}", reps.__class__(
            analysis.sv_sum(reps.estimate), analysis.sv_sum(reps.replicates),
            reps.valid, reps.classes, reps.method))
        if key == "raw":  # kept for the raw-vs-normalised figure only: no replicates
            del out["sv_raw_reps"], out["sv_raw_valid"]
        if key == "type":  # the floor of the papers' own normalisation; the others' is alike
            floor = analysis.noise_floor(result, normalize=norm, n_flips=N_FLIPS, simultaneous=False)
            out[f"sv_{key}_floor"] = floor.floor[..., 0].astype(np.float32)


def _identity(result, out: dict, model, pos_map, norm) -> dict[str, int]:
    """Identity memory of every class (type-weighted L), its replicates and floors."""
    W = analysis.embedding_matrix(model)
    L = analysis.normalizer_matrix(norm)
    Z = np.linalg.inv(L)
    D, C = result.max_delay, len(result.classes)
    est = np.full((D, C), np.nan, np.float32)
    reps = np.full((result.n_blocks, D, C), np.nan, np.float32)
    valid = np.zeros((result.n_blocks, D, C), bool)
    floor = np.full((D, C), np.nan, np.float32)
    ranks = {}
    for j, name in enumerate(result.classes):
        words = _class_words(result, name, pos_map)
        ids, _ = analysis.word_ids(model.vocab, words)
        if len(ids) < 2:
            continue
        basis = analysis.class_subspace(W, ids, Z)
        ranks[name] = int(basis.shape[1])
        stat = analysis.identity_statistic(basis, L)
        r = analysis.replicates(result, stat, classes=[name], method="jackknife")
        est[:, j], reps[:, :, j], valid[:, :, j] = r.estimate[:, 0, 0], r.replicates[:, :, 0, 0], r.valid[:, :, 0]
        if name in FLOOR_CLASSES:  # the floor costs n_flips SVDs per delay: where it is read
            f = analysis.noise_floor(result, stat, classes=[name], n_flips=N_FLIPS // 2,
                                     simultaneous=False)
            floor[:, j] = f.floor[:, 0, 0]
    out.update(identity=est, identity_reps=reps, identity_valid=valid, identity_floor=floor)
    return ranks


def _class_words(result, name: str, pos_map) -> list[str]:
    definition = (result.metadata.get("class_definitions") or {}).get(name)
    if isinstance(definition, dict) and "words" in definition:
        return [str(w) for w in definition["words"]]
    tags = definition.get("tags") if isinstance(definition, dict) else None
    return _words_with(pos_map, ",".join(tags or [name]))


def _properties(result, out: dict, model, pos_map, norm, counts) -> list[dict]:
    """|Gbar_d L n| and |Gbar_d L n| / s_1 of every property, class ``all``."""
    W = analysis.embedding_matrix(model)
    dirs, info = [], []
    for name, a, b in PROPERTIES:
        ids_a, _ = analysis.word_ids(model.vocab, _words_with(pos_map, a))
        ids_b, _ = analysis.word_ids(model.vocab, _words_with(pos_map, b))
        v = analysis.difference_vector(W, ids_a, ids_b, token_counts=counts, label=f"{a} - {b}")
        dirs.append(analysis.whitened_direction(v.vector, normalize=norm))
        info.append({"name": name, "label": v.label, "n_words": list(v.n_words),
                     "n_tokens": list(v.n_tokens or ()), "n_shared": v.n_shared})
    N = np.stack(dirs)  # (P, E) whitened unit directions
    L = analysis.normalizer_matrix(norm)

    def stat(m: np.ndarray) -> np.ndarray:
        m = m @ L
        s1 = np.linalg.svd(m, compute_uv=False)[..., :1]
        absolute = np.linalg.norm(m @ N.T, axis=-2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.concatenate([absolute, absolute / s1], axis=-1)

    P = len(PROPERTIES)
    r = analysis.replicates(result, stat, classes=["all"], method="jackknife")
    out["prop_abs"] = r.estimate[:, 0, :P].astype(np.float32)
    out["prop_abs_reps"] = r.replicates[:, :, 0, :P].astype(np.float32)
    out["prop_rel"] = r.estimate[:, 0, P:].astype(np.float32)
    out["prop_rel_reps"] = r.replicates[:, :, 0, P:].astype(np.float32)
    out["prop_valid"] = r.valid[:, :, 0]
    # Random-direction baseline: the same statistic for 50 random unit directions.
    rng = np.random.default_rng(0)
    rand = rng.standard_normal((50, N.shape[1]))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    means = result.sums[:, result.class_index("all")] / result.counts[:, result.class_index("all"), None, None]
    m = means @ L
    s1 = np.linalg.svd(m, compute_uv=False)[:, :1]
    absr = np.linalg.norm(m @ rand.T, axis=-2)
    out["prop_null_abs"] = absr.astype(np.float32)  # (D, 50)
    out["prop_null_rel"] = (absr / s1).astype(np.float32)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", HERE.parents[1].parent / "runs/study2"))
    parser.add_argument("--results", default=os.environ.get("RESULTS", HERE / "results"))
    parser.add_argument("--states", default=None, help="comma separated (default: all computed)")
    args = parser.parse_args()
    run, res = Path(args.run_dir), Path(args.results) / args.name
    model = sg.load_model(run / "models" / args.name / "best.pt")
    pos_map = read_pos_map(run / "data/wsj.pos-map.txt")
    config = sg.load_config(run / f"{args.name}.toml")
    train_text = run / config.data.train
    counts = np.bincount(sg.read_tokens(train_text, model.vocab), minlength=len(model.vocab))
    stats = {"raw": None,
             "type": analysis.load_embedding_stats(run / f"gradients/{args.name}.stats-type.npz"),
             "token": analysis.load_embedding_stats(run / f"gradients/{args.name}.stats-token.npz")}
    for text, prefix in (("ptbvalid", ""), ("sec20", "sec20_"), ("brownheld", "brownheld_")):
        for path in sorted((run / "gradients").glob(f"{args.name}_{text}_*.h5")):
            state = path.stem.rsplit("_", 1)[1]
            if args.states and state not in args.states.split(","):
                continue
            result = sg.load_result(path, blocks=True)
            # Every statistic below reads all delays' blocks again (identity memory once per
            # class); reading them into memory once (2-3 GB here) instead of decompressing
            # them from the file on every pass makes the analysis many times faster.
            result.block_sums = np.asarray(result.block_sums)
            out: dict[str, np.ndarray] = {}
            _memory(result, out, stats)
            summary = {"model": args.name, "state": state, "text": text,
                       "classes": list(result.classes), "max_delay": result.max_delay,
                       "n_blocks": result.n_blocks,
                       "weightings": {k: (v.weighting if v is not None else None)
                                      for k, v in stats.items()}}
            if text == "ptbvalid":  # identity and properties: on the word-type classes
                summary["identity_rank"] = _identity(result, out, model, pos_map, stats["type"])
                summary["properties"] = _properties(result, out, model, pos_map, stats["type"], counts)
            out["counts"] = result.counts.astype(np.int64)
            np.savez_compressed(res / f"measures_{prefix}{state}.npz", **out)
            (res / f"summary_{prefix}{state}.json").write_text(json.dumps(summary, indent=1))
            print(f"{args.name} {text} {state}: {len(result.classes)} classes, "
                  f"wrote {res}/measures_{prefix}{state}.npz")
    # The marker that the model is analysed (grid.sh and pipeline.sh skip it then).
    (res / "analysed.json").write_text(json.dumps(
        {"files": sorted(p.name for p in res.glob("measures_*.npz"))}, indent=1))

if __name__ == "__main__":
    main()
