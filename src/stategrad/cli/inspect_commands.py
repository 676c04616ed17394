"""``stategrad inspect``: what a result file holds and how it was made (NumPy and h5py
only, no torch)."""

from __future__ import annotations

import json

import click

from ._inputs import reading


@click.command("inspect")
@click.argument("result_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def inspect_command(result_path, as_json):
    """Show what a result file holds: shapes, counts per class, and how it was made."""
    from ..gradients import ResultError, load_result  # NumPy and h5py only: no torch

    try:
        with reading(result_path):
            res = load_result(result_path, blocks=False)
    except ResultError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(res.metadata, indent=2, sort_keys=True))
        return
    m = res.metadata
    click.echo(f"{result_path}: delays 0..{res.max_delay - 1}, H={res.hidden_size}, "
               f"E={res.embedding_size}, {len(res.classes)} classes")
    click.echo(f"  state {m.get('state')} of layer {m.get('layer')} ({m.get('cell')}), "
               f"semantics {m.get('semantics')}, dtype {m.get('dtype')}")
    text = m.get("text", {})
    click.echo(f"  text: {text.get('path', '?')} ({text.get('tokens', '?')} tokens, "
               f"tokenization {text.get('tokenization') or 'not recorded'})")
    click.echo(f"  model identity: {str(m.get('model_identity'))[:16]}...")
    click.echo(f"  sampling: {_sampling_text(m.get('sampling'))}")
    if isinstance(m.get("slice"), dict):
        click.echo(f"  slice: start positions [{m['slice']['start']}, {m['slice']['stop']})")
    for entry in m.get("coverage") or []:
        ranges = ", ".join(f"[{a}, {b})" for a, b in entry["ranges"]) or "none"
        click.echo(f"  start positions {ranges} of text {entry['text'][:12]}... "
                   f"(sampling: {entry['sampling'].get('rule')})")
    if m.get("coverage") is None:
        click.echo("  start positions covered: unknown (no coverage record)")
    if m.get("block_size"):
        click.echo(f"  blocks of {m['block_size']} start positions")
    for line in class_info_lines(m.get("class_info")):
        click.echo(f"  {line}")
    click.echo("  class           count(d=0)  count(d=D-1)")
    for j, name in enumerate(res.classes):
        click.echo(f"  {name:<15} {res.counts[0, j]:>10,}  {res.counts[-1, j]:>12,}")


def _sampling_text(sampling) -> str:
    """The sampling of start positions recorded in a result, in words."""
    if not isinstance(sampling, dict):
        return "not recorded"
    if sampling.get("every") and sampling["every"] > 1:
        text = f"one start position in {sampling['every']}"
    elif sampling.get("fraction") is not None and sampling["fraction"] < 1:
        text = f"a random fraction {sampling['fraction']:g} of start positions (seed {sampling.get('seed')})"
    else:
        text = "every start position"
    if sampling.get("starts_used") is not None:
        text += f", {sampling['starts_used']:,} start positions used"
    return text


def class_info_lines(info) -> list[str]:
    """How the classes were defined (the result's class_info), in words."""
    if not isinstance(info, dict) or not info:
        return ["classes: word types (no class_info recorded)"]
    if info.get("unit") == "token":
        lines = [f"classes: each token's gold tag in {info.get('tagged')} ({info.get('format')}, "
                 f"{'PTB-normalised' if info.get('normalized') else 'as is'}; classes "
                 f"{', '.join(info.get('classes') or [])}; {info.get('oov_tokens', '?')} "
                 "tokens outside the vocabulary)"]
    else:
        sources = [f"{k} {v}" for k in ("pos_map", "tag_map", "class_map") if (v := info.get(k))]
        lines = [f"classes: word types ({', '.join(info.get('classes') or []) or 'no tag classes'}"
                 + (f"; {', '.join(sources)}" if sources else "") + ")"]
    freq = info.get("frequency")
    if isinstance(freq, dict):
        lines.append(f"frequency strata {', '.join(freq.get('strata') or [])} by rank in "
                     f"{freq.get('text')} ({freq.get('ties')})")
    return lines


COMMANDS = [inspect_command]
