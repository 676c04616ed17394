"""Subcommands (to be filled in)."""

import click


def register(group: click.Group) -> None:
    pass
