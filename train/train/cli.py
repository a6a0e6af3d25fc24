"""python -m train COMMAND: build the corpus, train, export, evaluate, quantize and chart the
detectors the scanner runs. `python -m train COMMAND --help` describes each command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from train import corpus, evaluate, export, fit, options, plots, quantize, shortcut


class Command(Protocol):
    """What a subcommand module offers: its flags, and a run that returns the exit status."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# In the order a model is made: data, training, export, measurement.
COMMANDS: dict[str, Command] = {
    "corpus": corpus,
    "shortcut": shortcut,
    "fit": fit,
    "plots": plots,
    "export": export,
    "evaluate": evaluate,
    "quantize": quantize,
}


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own, which reports that command's usage errors."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, command in COMMANDS.items():
        doc = command.__doc__ or ""
        p = sub.add_parser(
            name,
            help=doc.strip().split("\n\n", 1)[0].replace("\n", " "),
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        parsers[name] = p
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    parser, parsers = _build()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        # Training used to be the only command, taking its flags straight after the module.
        parser.error(f"the command comes first, e.g. python -m train fit {' '.join(argv)}")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except options.UsageError as exc:
        parsers[args.command].error(str(exc))
