"""The `tuner` command line: one module per verb family, errors mapped to exit codes here only.

Exit codes: 0 ok; 1 drift, a failed check or a failed operation; 2 bad input; 3 environment problem
(not root, missing kernel feature); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tuner import __version__
from tuner.errors import EnvironmentProblem, InputError, TunerError
from tuner.logs import configure, get_logger

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130

# Each module has `register(subparsers)`, which adds its verbs with `set_defaults(func=handler)`;
# a handler takes the parsed arguments and returns an exit code.
_COMMAND_MODULES = (
    "tuner.cli.knobs",
    "tuner.cli.probe",
    "tuner.cli.observe",
    "tuner.cli.daemon",
    "tuner.cli.apply",
    "tuner.cli.sandbox",
    "tuner.cli.recommend",
)


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, InputError):
        return EXIT_BAD_INPUT
    if isinstance(error, EnvironmentProblem):
        return EXIT_ENVIRONMENT
    return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner",
        description="Find better socket and kernel network settings for a workload, prove the gain, "
                    "and apply the result as a profile.",
        epilog="exit codes: 0 ok, 1 drift or failed operation, 2 bad input, 3 environment problem",
    )
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="log events at this level and above (default: warning)")
    parser.add_argument("--log-json", action="store_true", default=None,
                        help="log JSON lines even on a terminal (the default elsewhere)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_level, json=args.log_json)
    log = get_logger("tuner.cli")
    try:
        return int(args.func(args) or EXIT_OK)
    except TunerError as err:
        log.debug("command.failed", command=args.command, error=type(err).__name__, message=err.message)
        print(f"tuner {args.command}: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        print(f"tuner {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `tuner knobs | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
