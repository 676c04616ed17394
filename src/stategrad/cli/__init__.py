"""The ``stategrad`` command: a thin layer over the Python API.

Each group of subcommands lives in its own module, which lists its commands in
``COMMANDS``; they are all added to the group here, in one loop.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings

import click

from .. import __version__

# Modules under stategrad.cli that each list their commands in ``COMMANDS``.
_COMMAND_MODULES = (
    "data_commands",
    "training_commands",
    "gradient_commands",
    "inspect_commands",
    "analysis_commands",
    "memory_commands",
    "legacy_commands",
    "report_commands",
    "synth_commands",
    "compare_commands",
    "ablation_commands",
)


# Failures of the input or the environment, not of the code: a missing or unreadable
# file, a full disk, a read-only folder (OSError), a text in the wrong encoding, a file
# that ends too early. A bare LookupError (an unknown codec) is expected too, see below.
_EXPECTED = (OSError, UnicodeError, EOFError)


def _debug() -> bool:
    return os.environ.get("STATEGRAD_DEBUG", "") not in ("", "0")


def _is_project_error(exc: BaseException) -> bool:
    """An error class of this package (ConfigError, ResultError, ...): raised on purpose,
    with a message meant for the user. Checked by module and name rather than by a list,
    so error classes added later are covered without editing this file."""
    return any(cls.__module__.startswith("stategrad.") and cls.__name__.endswith("Error")
               for cls in type(exc).__mro__)


def _describe(exc: BaseException) -> str:
    """One line for an expected failure, naming the file when the exception knows it."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot decode the input as {exc.encoding} ({exc.reason} at byte {exc.start}); " \
               "give the right --encoding"
    message = " ".join(str(exc).split())
    return message or type(exc).__name__


class _Main(click.Group):
    """The command group, with one error handler for every subcommand.

    Expected failures (the project's own errors, OSError, decoding errors) become one
    line ``Error: ...`` and exit status 1, never a traceback. Any other exception is a
    bug: it also gets one line, with its type and a hint, because a traceback in the
    middle of a long analysis helps no user; ``STATEGRAD_DEBUG=1`` re-raises every
    exception so a bug report can carry the full traceback.
    """

    def invoke(self, ctx: click.Context):
        from ._inputs import is_other_rank

        if is_other_rank():
            # under torchrun every rank meets the same warnings: rank 0 prints them
            warnings.simplefilter("ignore")
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as exc:
            if _debug() and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            # messages built from library errors may span lines (torch's do): keep one
            exc.message = " ".join(exc.message.split())
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _debug():
                raise
            # LookupError itself (not KeyError/IndexError, which are bugs) is an unknown codec
            if _is_project_error(exc) or isinstance(exc, _EXPECTED) or type(exc) is LookupError:
                raise click.ClickException(_describe(exc)) from None
            click.echo(f"Error: unexpected {type(exc).__name__}: {_describe(exc)} (a bug; "
                       "rerun with STATEGRAD_DEBUG=1 for the traceback and report it)",
                       err=True)
            sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stategrad")
def main() -> None:
    """State gradients of recurrent language models: what an RNN LM remembers.

    Train a word-level LSTM/GRU/RNN language model, compute the gradient of its
    state at step t+d with respect to the input embedding at step t for every
    position and delay, and analyse and plot those gradients.

    Start with `stategrad demo`: it builds a synthetic language with known memory,
    trains a model on it and writes a report, in a few minutes on a laptop CPU.
    """


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(f"{__name__}.{_name}").COMMANDS:
        main.add_command(_command)
