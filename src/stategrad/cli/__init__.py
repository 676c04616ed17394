"""The ``stategrad`` command: a thin layer over the Python API.

Each group of subcommands lives in its own module and registers itself here.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

# Modules under stategrad.cli that each define ``register(group)``.
_COMMAND_MODULES = (
    "data_commands",
    "training_commands",
    "gradient_commands",
    "analysis_commands",
    "report_commands",
    "synth_commands",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    importlib.import_module(f"{__name__}.{_name}").register(main)
