"""Data preparation commands: tagged corpora, word classes, pre-trained embeddings.

``show-classes`` reads the class options as ``gradients`` and ``ablation`` do
(:mod:`.class_inputs`), so it shows what they will use.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..data import (
    FORMATS,
    MISSING_INITS,
    TAGSETS,
    ClassSet,
    CorpusError,
    Vocabulary,
    align_embeddings,
    missing_from_map,
    oov_rate,
    prepare_tagged,
    read_pos_map,
    read_tokens,
    word_language_model_vocab,
)
from ._inputs import load_model, writing
from .class_inputs import ClassOptions, class_set_from_options
from .options import class_options, encoding_option, model_options, tokenization_option


def _vocab_from_options(
    vocab_file: str | None, text: str | None, vocab_size: int | None, encoding: str,
    tokenization: str = "original",
):
    if vocab_file:
        return Vocabulary.load(vocab_file, encoding=encoding)
    if text:
        return Vocabulary.build(text, max_size=vocab_size, encoding=encoding,
                                tokenization=tokenization)
    raise click.UsageError("give the vocabulary: --vocab FILE, or --train-text FILE to build it")


# --- commands -------------------------------------------------------------------------------


@click.command("prepare-tagged")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="LM text to write (one sentence per line).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help=(
        "Input format: conll ('word TAG chunk' per line, blank line between sentences), "
        "bracketed (treebank .pos files: '[ word/TAG ... ]', '=====' separators) or brown "
        "(one sentence of 'word/tag' tokens per line, '#FILE' lines). auto detects it per file."
    ),
)
@click.option(
    "--tagset",
    type=click.Choice(["auto", *TAGSETS]),
    default="auto",
    show_default=True,
    help="Tag set, for telling punctuation apart: brown for the brown format, else ptb.",
)
@click.option(
    "--normalize/--no-normalize",
    default=False,
    show_default=True,
    help=(
        "Mikolov's PTB conventions: lower case, numbers (and %) -> N, punctuation dropped; "
        "$, & and # stay."
    ),
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=2),
    help="Keep this many distinct words, <unk> and <eos> included (PTB: 10000); the rest become <unk>.",
)
@click.option(
    "--pos-map",
    "pos_map",
    type=click.Path(dir_okay=False),
    help="Where to write the word -> tags map [default: OUTPUT stem + .pos-map.txt].",
)
@click.option(
    "--tag-counts",
    type=click.Path(dir_okay=False),
    help="Where to write 'word<TAB>tag<TAB>count' [default: OUTPUT stem + .tag-counts.tsv].",
)
@click.option(
    "--min-tag-fraction",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help=(
        "Keep a tag in a word's map entry only if it covers this share of the word's tokens "
        "(drops rare mis-taggings such as 'the' as NNP; 0 keeps every gold tag)."
    ),
)
@click.option(
    "--min-tag-count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Keep a tag in the map only if seen this many times with the word.",
)
@click.option(
    "--unk-tags/--no-unk-tags",
    default=False,
    show_default=True,
    help="Give <unk> the tags of the words it replaced (it then joins nearly every class).",
)
@click.option(
    "--check",
    "check_texts",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Report the out-of-vocabulary rate of this LM text (e.g. ptb.valid.txt). Repeatable.",
)
@encoding_option("Encoding of inputs and output.")
def prepare_tagged_command(
    inputs,
    output,
    fmt,
    tagset,
    normalize,
    vocab_size,
    pos_map,
    tag_counts,
    min_tag_fraction,
    min_tag_count,
    unk_tags,
    check_texts,
    encoding,
):
    """Turn POS-tagged corpora into LM text plus a word -> tags map.

    Several INPUTS are concatenated into one text (e.g. conll2000.train.txt and
    treebank-sample.pos). Besides OUTPUT it writes the POS map that `--pos-map`
    of the gradient commands reads, and the tag counts it was made from.

    \b
    Example (a PTB-style training text from WSJ files, 10k words):
      stategrad prepare-tagged conll2000.train.txt treebank-sample.pos \\
          -o wsj/train.txt --normalize --vocab-size 10000 --check ptb.valid.txt
    """
    try:
        with writing(output, "-o"):
            prepared = prepare_tagged(
                list(inputs),
                output,
                fmt=None if fmt == "auto" else fmt,
                tagset=None if tagset == "auto" else tagset,
                normalize=normalize,
                vocab_size=vocab_size,
                pos_map=pos_map or True,
                tag_counts=tag_counts or True,
                unk_tags=unk_tags,
                min_tag_count=min_tag_count,
                min_tag_fraction=min_tag_fraction,
                encoding=encoding,
            )
    except CorpusError as exc:
        raise click.ClickException(str(exc)) from exc
    for path, detected in prepared.formats.items():
        click.echo(f"{path}: {detected} format, {prepared.tagset} tags")
    click.echo(prepared.summary())
    for text in check_texts:
        rate, oov, total = oov_rate(text, prepared.vocabulary.words, encoding=encoding)
        click.echo(f"{text}: {oov} of {total} tokens ({100 * rate:.2f}%) outside the vocabulary")


@click.command("convert-embeddings")
@click.argument("word2vec_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npz to write."
)
@click.option(
    "--vocab",
    "vocab_file",
    type=click.Path(exists=True, dir_okay=False),
    help="The LM's vocabulary ('word<TAB>id' lines, or one word per line in id order).",
)
@click.option(
    "--train-text",
    type=click.Path(exists=True, dir_okay=False),
    help="Build the vocabulary from this training text instead, as training does.",
)
@click.option("--vocab-size", type=click.IntRange(min=2), help="Vocabulary cap, with --train-text.")
@click.option(
    "--format",
    "w2v_format",
    type=click.Choice(["auto", "text", "binary"]),
    default="auto",
    show_default=True,
    help="word2vec file format.",
)
@click.option(
    "--missing",
    type=click.Choice(MISSING_INITS),
    default="uniform",
    show_default=True,
    help="Initial vector of words without one: uniform in [-init-scale, init-scale], normal, or zeros.",
)
@click.option("--init-scale", type=click.FloatRange(min=0), default=0.05, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the missing rows.")
@click.option(
    "--match-lowercase/--exact",
    default=False,
    show_default=True,
    help="Let a word without a vector take that of a capitalised form (NASDAQ for nasdaq).",
)
@click.option(
    "--original-dir",
    type=click.Path(file_okay=False),
    help="Also write the original's layout: DIR/all.npy and DIR/all.dict.",
)
@click.option(
    "--missing-list", type=click.Path(dir_okay=False), help="Write the words without a vector here."
)
@encoding_option()
def convert_embeddings_command(
    word2vec_file,
    output,
    vocab_file,
    train_text,
    vocab_size,
    w2v_format,
    missing,
    init_scale,
    seed,
    match_lowercase,
    original_dir,
    missing_list,
    encoding,
):
    """Align word2vec vectors (text or binary) to an LM vocabulary, by word.

    Row i of the result is the vector of the vocabulary's word i (the original's
    converter kept word2vec file order instead). Words without a vector are
    listed and initialised as --missing says. Train with the result through the
    training command's pre-trained embedding option.
    """
    try:
        vocab = _vocab_from_options(vocab_file, train_text, vocab_size, encoding)
        aligned = align_embeddings(
            word2vec_file,
            vocab,
            binary=None if w2v_format == "auto" else w2v_format == "binary",
            missing=missing,
            init_scale=init_scale,
            match_lowercase=match_lowercase,
            seed=seed,
            encoding=encoding,
        )
        with writing(output, "-o"):
            path = aligned.save(output)
        if original_dir:
            with writing(original_dir, "--original-dir"):
                aligned.save_original_layout(original_dir)
    except CorpusError as exc:
        raise click.ClickException(str(exc)) from exc
    absent = aligned.missing
    click.echo(
        f"wrote {path}: {len(vocab)} words x {aligned.vectors.shape[1]} dims; "
        f"{len(vocab) - len(absent)} from {word2vec_file}, {len(absent)} without a vector "
        f"({missing}" + (f", scale {init_scale})" if missing != "zeros" else ")")
    )
    if absent:
        shown = ", ".join(absent[:20]) + (" ..." if len(absent) > 20 else "")
        click.echo(f"without a vector: {shown}")
    if missing_list:
        Path(missing_list).write_text("".join(w + "\n" for w in absent), encoding="utf-8")
    if original_dir:
        click.echo(f"wrote {original_dir}/all.npy and {original_dir}/all.dict")


@click.command("show-classes")
@model_options("Use this model's vocabulary (a checkpoint, or a model from elsewhere with "
               "--vocab).", must_exist=True)
@click.option(
    "--train-text",
    type=click.Path(exists=True, dir_okay=False),
    help="Build the vocabulary from this training text instead.",
)
@click.option("--vocab-size", type=click.IntRange(min=2), help="Vocabulary cap, with --train-text.")
@click.option(
    "--text",
    type=click.Path(exists=True, dir_okay=False),
    help="Count class tokens in this text (e.g. the validation text) and list its words missing from the POS map.",
)
@class_options
@tokenization_option
@encoding_option()
def show_classes_command(model_path, vocab_path, trusted, nonlinearity, code_path, train_text,
                         vocab_size, text, tokenization, encoding, **class_opts):
    """Show what the class options give: words and tokens per class.

    Use it to check --classes/--pos-map/--tag-map/--class-words/--class-map (or
    --tagged, and --frequency-bands) before a long gradient run.  With --tagged the
    tokens counted are the tagged file's.
    """
    from ..lm import ModelError  # torch, only for this command

    opts = ClassOptions(**class_opts)
    if text and opts.tagged:
        raise click.UsageError("--tagged is the text whose tokens are counted; leave out --text")
    try:
        if model_path:
            model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
            vocab, tokenization = model.vocab, tokenization or model.tokenization
        else:
            vocab = _vocab_from_options(vocab_path, train_text, vocab_size, encoding,
                                        tokenization or "original")
        class_set = class_set_from_options(vocab, opts, encoding=encoding,
                                           tokenization=tokenization or "original")
        tokens = read_tokens(text, vocab, encoding=encoding,
                             tokenization=tokenization or "original") if text else None
    except (CorpusError, ModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    if opts.tagged:
        tokens, text = class_set.tokens, opts.tagged
    _print_class_table(class_set, tokens)
    if opts.pos_map and tokens is not None:
        absent = missing_from_map(vocab, read_pos_map(opts.pos_map, encoding), tokens)
        n = sum(c for _, c in absent)
        click.echo(
            f"{len(absent)} words of {text} ({n} tokens) are missing from {opts.pos_map} "
            "and belong to no tag class"
            + (": " + ", ".join(f"{w} ({c})" for w, c in absent[:15]) if absent else "")
        )


def _print_class_table(class_set: ClassSet, tokens) -> None:
    types = class_set.type_counts()
    counts = class_set.counts_in(tokens) if tokens is not None else None
    width = max(16, 2 + max(len(n) for n in class_set.names))
    click.echo(f"{'class':<{width}}{'words':>8}"
               + (f"{'tokens':>10}{'share':>8}" if counts is not None else ""))
    for j, name in enumerate(class_set.names):
        line = f"{name:<{width}}{int(types[j]):>8}"
        if counts is not None:
            line += f"{int(counts[j]):>10}{100 * counts[j] / max(counts[0], 1):>7.1f}%"
        click.echo(line)


@click.command("vocab")
@click.option("--word-language-model", "wlm_dir", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="The data folder (--data) a model of PyTorch's word_language_model example "
                   "was trained on: train.txt, valid.txt, test.txt.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Vocabulary file to write ('word<TAB>id'), for --vocab.")
@encoding_option()
def vocab_command(wlm_dir, out, encoding):
    """Rebuild the vocabulary a word_language_model model was trained with.

    That example saves none; its ids follow first appearance over train, valid and
    test, with <eos> after every line.  The same words in another order would run and
    give wrong numbers, so give the model this file as --vocab.
    """
    try:
        vocab = word_language_model_vocab(wlm_dir, encoding=encoding)
    except CorpusError as exc:
        raise click.ClickException(str(exc)) from exc
    with writing(out, "-o"):
        vocab.save(out)
    click.echo(f"wrote {out}: {len(vocab)} words")


COMMANDS = [prepare_tagged_command, convert_embeddings_command, show_classes_command,
            vocab_command]
