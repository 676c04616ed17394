"""The text a command analyses and the classes of its positions, from the class options
(``options.class_options``): word-type classes of a text, or token classes of a tagged
file whose words are the text, either one optionally in frequency strata.  Shared by
``gradients``, ``ablation`` and ``show-classes`` so they read and refuse alike."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import click

from ..data import ClassError, ClassSet, CorpusError, Vocabulary
from ._inputs import check_vocabulary, load_model, read_model_text, warn


@dataclass
class ClassOptions:
    """The values of the class options, as click passes them."""

    classes: tuple[str, ...] = ()
    pos_map: str | None = None
    tag_map: str | None = None
    class_words: tuple[str, ...] = ()
    class_map: str | None = None
    tagged: str | None = None
    tagged_format: str | None = None
    tagged_as_is: bool = False
    frequency_bands: str | None = None
    frequency_text: str | None = None

    def check(self) -> None:
        """Usage errors: options that only go with others, or not with them."""
        if self.tagged is None:
            for flag, given in (("--tagged-format", self.tagged_format),
                                ("--tagged-as-is", self.tagged_as_is)):
                if given:
                    raise click.UsageError(f"{flag} goes with --tagged FILE")
        else:
            for flag, given in (("--pos-map", self.pos_map), ("--class-words", self.class_words),
                                ("--class-map", self.class_map)):
                if given:
                    raise click.UsageError(
                        f"{flag} defines word-type classes; --tagged gives each token the class "
                        "of its own gold tag (choose the classes with --classes)")
        if (self.frequency_bands is None) != (self.frequency_text is None):
            raise click.UsageError("--frequency-bands and --frequency-text go together")
        for spec in self.classes or []:
            parts = [part.strip() for part in spec.split(",")]
            # 'ptb:' (a set with an empty selection) or ',' would quietly mean something else
            if not any(parts) or any(part.endswith(":") for part in parts):
                raise click.BadParameter(f"{spec!r} names no class", param_hint="--classes")


def _echo_class_warnings(caught) -> None:
    from ..data import ClassWarning

    for w in caught:
        if issubclass(w.category, ClassWarning):
            warn(f"warning: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def class_set_from_options(vocab: Vocabulary, opts: ClassOptions, *, encoding: str = "utf-8",
                           no_eos: bool = False, tokenization: str = "original") -> ClassSet:
    """The class set the options ask for (only 'all' when none is given): word-type
    classes, or with --tagged a TokenClassSet that also holds the text (``.tokens``);
    with --frequency-bands, in strata.  Class warnings go to stderr, one line each."""
    from ..data import ClassWarning, load_classes, load_token_classes, stratify, word_ranks

    opts.check()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ClassWarning)
            if opts.tagged:
                class_set = load_token_classes(
                    vocab, opts.tagged, list(opts.classes or []), fmt=opts.tagged_format,
                    normalize=not opts.tagged_as_is, tag_map=opts.tag_map, no_eos=no_eos,
                    encoding=encoding)
            else:
                class_set = load_classes(vocab, list(opts.classes or []), opts.pos_map,
                                         class_words=list(opts.class_words or []),
                                         class_map=opts.class_map, tag_map=opts.tag_map,
                                         encoding=encoding)
    except ClassError as exc:
        raise click.UsageError(str(exc)) from exc
    except CorpusError as exc:  # a tagged file that cannot be read (the message names it)
        # the readers name prepare-tagged's --format; here the option is --tagged-format
        raise click.ClickException(str(exc).replace("--format", "--tagged-format")) from exc
    _echo_class_warnings(caught)
    if opts.frequency_bands is None:
        return class_set
    try:
        ranks = word_ranks(opts.frequency_text, encoding=encoding, tokenization=tokenization)
        return stratify(class_set, ranks, opts.frequency_bands, vocab=vocab,
                        source=opts.frequency_text)
    except ClassError as exc:
        raise click.UsageError(f"--frequency-bands/--frequency-text: {exc}") from exc
    except CorpusError as exc:
        raise click.ClickException(f"--frequency-text: {exc}") from exc


def read_inputs(model_path, vocab_path, trusted, nonlinearity, code_path, text_path, no_eos,
                encoding, start, force=False, tokenization=None, class_opts: ClassOptions | None
                = None):
    """The model, the tokens analysed and the classes of their positions.  The text is
    --text, or with --tagged the tagged file's words (exactly one of them).  Checked
    against --start; warns of <unk>; a model from elsewhere that predicts the text worse
    than a unigram model is refused (its vocabulary order probably does not match)
    unless ``force``."""
    from ..data import unk_warning
    from ..lm import ModelError

    opts = class_opts or ClassOptions()
    if text_path is not None and opts.tagged is not None:
        raise click.UsageError("give --text or --tagged, not both: with --tagged the text "
                               "analysed is the tagged file's words")
    if text_path is None and opts.tagged is None:
        raise click.UsageError("give the text to analyse: --text FILE, or --tagged FILE (a "
                               "tagged corpus whose words are the text)")
    try:
        lm = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
        tokenization = tokenization or lm.tokenization
        class_set = class_set_from_options(lm.vocab, opts, encoding=encoding, no_eos=no_eos,
                                           tokenization=tokenization)
        if opts.tagged:
            tokens, text_path = class_set.tokens, opts.tagged
        else:
            tokens = read_model_text(lm, text_path, tokenization=tokenization, no_eos=no_eos,
                                     encoding=encoding)
    except (ModelError, CorpusError) as exc:
        raise click.ClickException(str(exc)) from exc
    if len(tokens) == 0:
        raise click.ClickException(f"{text_path} holds no tokens")
    if start >= len(tokens):
        raise click.BadParameter(f"{start} is past the end of {text_path} ({len(tokens)} tokens)",
                                 param_hint="--slice-start/--start")
    warning = unk_warning(tokens, lm.vocab)
    if warning:
        warn(warning)
    check_vocabulary(lm, tokens, force=force, vocab_path=vocab_path, text=text_path)
    return lm, tokens, class_set
