"""``stategrad synth`` (a synthetic language whose memory is known) and ``stategrad demo``."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..synth import (
    PRESETS,
    PROPERTIES,
    VARIANCE_PROFILES,
    SynthConfig,
    SynthError,
    TriggerClass,
    generate_corpus,
    property_class,
)
from ._inputs import writing

_TRIGGER_KEYS = {"k": "delay", "delay": "delay", "n": "n_triggers", "rate": "rate",
                 "remember": "remembered", "remembered": "remembered", "values": "n_values",
                 "name": "name"}


def parse_trigger(spec: str) -> TriggerClass:
    """``15`` or ``k=15,n=8,remember=feature,values=2,rate=0.05,name=long``."""
    spec = spec.strip()
    fields: dict[str, Any] = {}
    if spec.isdigit():
        fields["delay"] = int(spec)
    else:
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in _TRIGGER_KEYS:
                raise SynthError(
                    f"bad trigger spec {spec!r}: expected K or comma-separated key=value with keys "
                    f"k, n, rate, remember ({'|'.join(PROPERTIES)}), values, name"
                )
            fields[_TRIGGER_KEYS[key]] = value.strip()
    if "delay" not in fields:
        raise SynthError(f"trigger spec {spec!r} has no delay (k=...)")
    try:
        for key in ("delay", "n_triggers", "n_values"):
            if key in fields:
                fields[key] = int(fields[key])
        if "rate" in fields:
            fields["rate"] = float(fields["rate"])
    except ValueError as exc:
        raise SynthError(f"bad number in trigger spec {spec!r}: {exc}") from None
    fields.setdefault("name", f"k{fields['delay']}")
    trigger = TriggerClass(**fields)
    trigger.check()
    return trigger


def _trigger_option(spec: str) -> TriggerClass:
    try:
        return parse_trigger(spec)
    except SynthError as exc:
        raise SynthError(f"--trigger: {exc}") from None


_PROPERTY_KEYS = {"k": "distance", "distance": "distance", "n": "n_carriers", "rate": "rate",
                  "name": "name"}


def parse_property(spec: str) -> TriggerClass:
    """``6`` or ``k=6,n=8,rate=0.05,name=number``: a binary property whose carriers' value
    the word exactly k steps later must agree with."""
    spec = spec.strip()
    fields: dict[str, Any] = {}
    parts = [spec] if spec.isdigit() else spec.split(",")
    for part in parts:
        key, sep, value = part.partition("=") if not part.isdigit() else ("k", "=", part)
        key = key.strip().lower()
        if not sep or key not in _PROPERTY_KEYS:
            raise SynthError(f"bad --property spec {spec!r}: expected K or comma-separated "
                             "key=value with keys k, n, rate, name")
        fields[_PROPERTY_KEYS[key]] = value.strip()
    if "distance" not in fields:
        raise SynthError(f"--property spec {spec!r} has no distance (k=...)")
    try:
        for key in ("distance", "n_carriers"):
            if key in fields:
                fields[key] = int(fields[key])
        if "rate" in fields:
            fields["rate"] = float(fields["rate"])
    except ValueError as exc:
        raise SynthError(f"bad number in --property spec {spec!r}: {exc}") from None
    prop = property_class(**fields)
    try:
        prop.check()
    except SynthError as exc:
        raise SynthError(f"--property: {exc}") from None
    return prop


@contextlib.contextmanager
def _no_partial_corpus(outdir: Path) -> Iterator[None]:
    """On failure, remove what this run added to OUTDIR (and OUTDIR, if it made it), so
    that no half corpus is mistaken for a whole one; files already there stay."""
    existed = outdir.exists()
    before = set(outdir.iterdir()) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(outdir, ignore_errors=True)
        elif outdir.is_dir():
            for path in set(outdir.iterdir()) - before:
                if path.is_file():
                    path.unlink(missing_ok=True)
        raise


def _parse_scale(text: str) -> tuple[str, float]:
    group, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return group.strip(), float(value)
    except ValueError:
        raise SynthError(f"bad --scale {text!r}: expected GROUP=NUMBER, e.g. trigger_k15=3") from None


def _base_config(preset_name: str, config_path: Path | None) -> SynthConfig:
    if config_path is None:
        return PRESETS[preset_name]
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SynthError(f"cannot read configuration {config_path}: {exc}") from None
    if isinstance(data, dict) and "config" in data and "format" in data:
        data = data["config"]  # a synth.json written by an earlier run
    if not isinstance(data, dict):
        raise SynthError(f"{config_path} must hold a JSON object")
    try:
        return SynthConfig.from_dict(data)
    except (SynthError, KeyError, TypeError, ValueError) as exc:
        # from_dict names the missing or unexpected key, not the file it came from
        raise SynthError(f"{config_path}: {exc}") from None


@click.command("synth")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="default",
              show_default=True, help="Starting configuration; the options below change it.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Start from a JSON configuration, or the synth.json of an earlier corpus.")
@click.option("--trigger", "triggers", multiple=True, metavar="SPEC",
              help="A trigger class (repeatable; replaces the preset's): K, or "
                   "k=K,n=N,rate=R,remember=identity|feature|class,values=V,name=NAME.")
@click.option("--property", "properties", multiple=True, metavar="SPEC",
              help="A planted binary property (repeatable; added to the triggers): K, or "
                   "k=K,n=N,rate=R,name=NAME: carriers with value 0/1 and the word exactly K "
                   "steps later agreeing with it.")
@click.option("--fillers", type=int, help="Number of filler words.")
@click.option("--filler-zipf", type=float, help="Zipf exponent of the filler distribution (0: uniform).")
@click.option("--end-prob", type=float, help="Probability of <eos> at a free position.")
@click.option("--noise", type=float, help="Probability that a target is replaced by a random target.")
@click.option("--train-tokens", type=int, help="Tokens in train.txt (<eos> included).")
@click.option("--valid-tokens", type=int, help="Tokens in valid.txt.")
@click.option("--test-tokens", type=int, help="Tokens in test.txt.")
@click.option("--seed", type=int, help="Random seed (the output is a function of the configuration).")
@click.option("--embedding-dim", type=int, help="Dimension of embeddings.npz (0: write none).")
@click.option("--variance", type=click.Choice(VARIANCE_PROFILES),
              help="Per-direction variance of the embeddings: equal, or unequal (the trap that "
                   "the normalisation must undo).")
@click.option("--scale", "scales", multiple=True, metavar="GROUP=S",
              help="Standard deviation of an embedding block (repeatable): groups, filler, "
                   "target or trigger_<name>.")
@click.option("--force", is_flag=True, help="Overwrite files of an earlier corpus in OUTDIR.")
def synth(outdir: Path, preset_name: str, config_path: Path | None, triggers: tuple[str, ...],
          properties: tuple[str, ...],
          fillers: int | None, filler_zipf: float | None, end_prob: float | None,
          noise: float | None, train_tokens: int | None, valid_tokens: int | None,
          test_tokens: int | None, seed: int | None, embedding_dim: int | None,
          variance: str | None, scales: tuple[str, ...], force: bool) -> None:
    """Generate a synthetic corpus whose memory is known, into OUTDIR.

    Fillers need no memory; a trigger of class k fixes the word exactly k steps
    later.  Writes train.txt, valid.txt, test.txt (one sentence per line), synth.json
    (ground truth, exact entropy rate, ideal cross-entropy on valid/test), classes.tsv
    (the ground-truth classes as word<TAB>class lines, for gradients --class-map: the
    triggers, filler, target, and per property its carriers by value, trigger_<name>_v0
    and _v1, and its agreeing words, target_<name>) and, with an embedding dimension,
    embeddings.npz for frozen embeddings.
    """
    try:
        config = _base_config(preset_name, config_path)
        changes: dict[str, Any] = {
            "n_fillers": fillers, "filler_zipf": filler_zipf, "end_prob": end_prob,
            "noise": noise, "train_tokens": train_tokens, "valid_tokens": valid_tokens,
            "test_tokens": test_tokens, "seed": seed, "embedding_dim": embedding_dim,
            "variance": variance,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if triggers:
            changes["triggers"] = tuple(_trigger_option(t) for t in triggers)
        if properties:
            base = changes.get("triggers", config.triggers)
            changes["triggers"] = (*base, *(parse_property(p) for p in properties))
        if scales:
            changes["scales"] = {**config.scales, **dict(_parse_scale(s) for s in scales)}
        config = replace(config, **changes)
        config.check()
        with writing(outdir, "OUTDIR"), _no_partial_corpus(Path(outdir)):
            corpus = generate_corpus(config, outdir, overwrite=force)
    except SynthError as exc:
        raise click.ClickException(str(exc)) from None

    meta = corpus.metadata
    ent = meta["entropy"]
    click.echo(f"wrote {outdir}/")
    for split, info in meta["splits"].items():
        click.echo(f"  {meta['files'][split]:<11} {info['sentences']:>8,} sentences "
                   f"{info['tokens']:>10,} tokens")
    if meta["embeddings"]:
        emb = meta["embeddings"]
        click.echo(f"  {meta['files']['embeddings']:<11} {meta['vocabulary']['lm_vocabulary_size']} "
                   f"words x {emb['dim']} dims ({emb['profile']} variance)")
    click.echo(f"  {meta['files']['classes']:<11} ground-truth classes (word<TAB>class, "
               "for --class-map)")
    click.echo("  synth.json  ground truth and entropy")
    click.echo(f"entropy rate {ent['rate_nats_per_token']:.4f} nats/token "
               f"(perplexity {ent['perplexity']:.3f}); mean sentence "
               f"{ent['mean_sentence_tokens']:.1f} tokens")
    for split, emp in meta["empirical"].items():
        click.echo(f"ideal model on {split}: {emp['cross_entropy_nats']:.4f} "
                   f"+- {emp['std_error']:.4f} nats/token (perplexity {emp['perplexity']:.3f})")
    for name, truth in meta["ground_truth"].items():
        forgotten = ent["perplexity_if_values_forgotten"].get(name)
        extra = f"; perplexity if forgotten {forgotten:.3f}" if forgotten else ""
        click.echo(f"  {name:<14} memory span {truth['memory_span']:>3}"
                   f"{' (' + truth['remembered'] + ')' if truth['remembered'] else ''}{extra}")


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-output"), show_default=True,
              help="Folder for the corpus, model, gradients, statistics, report and summary.")
@click.option("--check", is_flag=True,
              help="Exit with status 1 when a ground-truth criterion fails (for CI).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the corpus and of training (seeds 0-4 are validated to pass --check).")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="CPU threads for PyTorch (0: its default); a 64-unit LSTM gains little from more.")
def demo(out_dir: Path, check: bool, seed: int, threads: int) -> None:
    """Generate a synthetic language with known memory, train a small LSTM on it,
    compute and analyse its state gradients and write the report (a few minutes on a
    laptop CPU, no network).

    Triggers fix the word 5 or 15 steps later, properties of a carrier word must be
    agreed with 4 or 9 steps later, fillers need no memory; the report should show
    exactly that (identity memory for the triggers, |G L n| for the properties).  The criteria that say so are printed at the end and
    written to OUT/summary.json; --check makes a failed criterion an error.
    """
    from ..demo import DemoError, DemoSettings, describe, run_demo

    try:
        summary = run_demo(out_dir, DemoSettings(seed=seed, threads=threads), echo=click.echo)
    except (DemoError, SynthError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(describe(summary))
    if check and not summary.passed:
        raise click.ClickException(
            "demo check failed: " + "; ".join(c.name for c in summary.failed))


COMMANDS = [synth, demo]
