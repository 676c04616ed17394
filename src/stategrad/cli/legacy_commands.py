"""The original's gradient directories: ``legacy-average``, ``legacy-svs``,
``legacy-export`` and ``legacy-np2npz``, on top of :mod:`stategrad.legacy`."""

from __future__ import annotations

from pathlib import Path

import click

from ._inputs import analysis_errors, load_result, note, split_list, write_tables
from .options import show_classes_option, table_options


@click.command("legacy-average")
@click.argument("grad_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("delay", type=int)
@click.option("--classes", "class_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Class file (one tag per line); repeat for several classes. The class "
                   "is named after the file, as in the original.")
@click.option("--pos-map", "pos_map_path", type=click.Path(exists=True, dir_okay=False),
              help="Word -> possible tags map (needed with --classes).")
@click.option("--npz/--npy", "npz", default=None,
              help="Read all.npz (np2npz output) or the .npy files (default: .npy if "
                   "present).  Not the original's switch: avg_gradient_matrix_pos.py reads "
                   "all.npz by default and the .npy files when given 'npz' (inverted).")
def legacy_average(grad_dir, delay, class_files, pos_map_path, npz):
    """The original's avg_gradient_matrix.py: the mean of every matrix in
    GRAD_DIR/timestep_*/delay_DELAY/ (or GRAD_DIR/delay_DELAY/), saved as
    GRAD_DIR/delay_DELAY_avg.npy; with --classes its avg_gradient_matrix_pos.py, per
    class as delay_DELAY_avg_<class>.npy.

    \b
    On purpose unlike the original: sums in float64 (it summed float32), and with
    .npy files each matrix counts once (avg_gradient_matrix_pos.py added each file
    once per matching word of the whole mapping.txt, which makes its per-class
    .npy result the all-words average); with all.npz both agree."""
    from .. import legacy
    from ..data import TaggedError, read_class_file, read_pos_map

    if class_files and not pos_map_path:
        raise click.UsageError("--classes needs --pos-map")
    with analysis_errors(TaggedError):
        classes = {Path(f).name: read_class_file(f) for f in class_files}
        pos_map = read_pos_map(pos_map_path) if pos_map_path else None
        averages = legacy.legacy_averages(grad_dir, delay, classes=classes or None,
                                          pos_map=pos_map, npz=npz)
    for name, avg in averages.items():
        label = "all" if name is None else name
        if avg.mean is None:
            note(f"class {label!r}: no matrix at delay {delay} belongs to it; nothing written")
            continue
        path = legacy.save_legacy_average(avg, grad_dir)
        click.echo(f"{label}: mean of {avg.count} of {avg.total} matrices -> {path}")
    missing = next((a.missing_words for a in averages.values() if a.missing_words), None)
    if missing:
        shown = ", ".join(f"{w} ({n})" for w, n in missing.most_common(20))
        note(f"{len(missing)} word(s) not in the POS map ({sum(missing.values())} matrices, "
              f"counted for no class): {shown}{' ...' if len(missing) > 20 else ''}")

@click.command("legacy-svs")
@click.argument("grad_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("d_norm", type=click.Path(exists=True, dir_okay=False))
@click.argument("class_name", required=False)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True)
@table_options()
def legacy_svs(grad_dir, d_norm, class_name, top, csv_path, json_path):
    """The original's calculate_svs.py: singular values of G @ L for each
    GRAD_DIR/delay_*_avg[_CLASS].npy, L read from D_NORM (_D_norm_grad.npy or a
    stats .npz)."""
    from .. import legacy

    with analysis_errors():
        table = legacy.legacy_svs(grad_dir, d_norm, class_name, top=top)
    click.echo(table.format())
    write_tables(table, csv_path, json_path)

@click.command("legacy-export")
@click.argument("result_path", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@show_classes_option()
@click.option("--normalize", "normalize", type=click.Path(exists=True),
              help="Embedding statistics (.npz from embedding-stats, or the original's "
                   "_D_norm_grad.npy): also write the pre-normalised averages "
                   "delay_<d>_avg[_<class>]_norm.npy (G L), the only files the original's "
                   "relative_memory.py reads, and (from a stats file) its four "
                   "emb_*.npy files, emb_Z_norm_emb.npy among them.")
def legacy_export(result_path, out_dir, classes, normalize):
    """Write a result's average gradients as the original's delay_<d>_avg[_<class>].npy
    files, for its calculate_svs.py and cos_subspace_diff_vector.py; with --normalize
    also delay_<d>_avg[_<class>]_norm.npy for its relative_memory.py."""
    from .. import analysis, legacy

    with analysis_errors():
        result = load_result(result_path)
        written = legacy.export_result_averages(result, out_dir, classes=split_list(classes),
                                                normalize=normalize)
        info = analysis.normalization_info(normalize)
    click.echo(f"wrote {len(written)} files to {out_dir}")
    if info:
        click.echo(f"normalisation: {info['text']}")
    else:
        note("no --normalize: relative_memory.py reads only delay_<d>_avg[_<class>]_norm.npy "
              "(G L) files, so it finds nothing here")
    for name in split_list(classes) or result.classes:
        empty = result.empty_delays(name)
        if empty:
            note(f"class {name!r} has no occurrences at delay(s) {empty}: no file for them")

@click.command("legacy-np2npz")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--remove", is_flag=True, help="Delete the .npy files once all.npz is written.")
def legacy_np2npz(folder, remove):
    """The original's np2npz.py: stack FOLDER's numbered .npy files into FOLDER/all.npz."""
    from .. import legacy

    with analysis_errors():
        click.echo(f"wrote {legacy.np2npz(folder, remove=remove)}")


COMMANDS = [legacy_average, legacy_svs, legacy_export, legacy_np2npz]
