"""``domain-eval`` command line: generate | serve | export-base | safety | judge | judge-agreement | train | report.

Each sub-command lives beside the code it drives: a module exposes
``add_cli(subparsers)`` that registers its parser and sets ``func``. Modules are
imported here only to register parsers; they keep torch & co. lazy.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Module -> provides add_cli(subparsers). Order is the order shown in --help.
SUBCOMMAND_MODULES = (
    "domain_eval.generation_cli",
    "domain_eval.serve_cli",
    "domain_eval.safety",
    "domain_eval.judges.cli",
    "domain_eval.judges.agreement",
    "training.cli",
    "domain_eval.report_cli",
)

EXIT_USAGE = 2
EXIT_BLOCKED = 3


def build_parser() -> argparse.ArgumentParser:
    from domain_eval import __version__

    parser = argparse.ArgumentParser(
        prog="domain-eval",
        description="Suggest domain names with small fine-tuned LMs, check safety, judge and evaluate them.",
        epilog="Run 'domain-eval COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"domain-eval {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that command is not built yet
                continue
            raise
        module.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
