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
from tuner.logs import configure, get_logger, journal_prefix

__all__ = ["EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "main"]

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
    "tuner.cli.profiles",
    "tuner.cli.units",
    "tuner.cli.shell",
    "tuner.cli.report",
)


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, InputError):
        return EXIT_BAD_INPUT
    if isinstance(error, EnvironmentProblem):
        return EXIT_ENVIRONMENT
    return EXIT_FAILED


def _print_error_json(err: TunerError, code: int) -> None:
    from tuner.cli.output import print_json

    details = {
        k: getattr(err, k) for k in ("file", "key", "line", "knob") if getattr(err, k, None) is not None
    }
    print_json(
        {
            "changed": False,
            "error": err.message,
            "hint": err.hint,
            "exit_code": code,
            "kind": type(err).__name__,
            **{k: str(v) if k != "line" else v for k, v in details.items()},
        }
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner",
        description="Find better socket and kernel network settings for a workload, prove the gain, "
        "and apply the result as a profile.",
        epilog="exit codes: 0 ok, 1 drift or failed operation, 2 bad input, 3 environment problem",
    )
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    _add_log_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    for command in _subparsers(parser):  # the log options work anywhere on the line
        _add_log_options(command, default=argparse.SUPPRESS)
    return parser


LOG_LEVELS = ("debug", "info", "warning", "error")


def _add_log_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        choices=LOG_LEVELS,
        help="log events at this level and above (default: $TUNER_LOG_LEVEL, else the daemon "
        "config's log_level for `tuner daemon`, else warning)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=None if default is None else default,
        help="log JSON lines even on a terminal (the default elsewhere)",
    )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [child, *_subparsers(child)]
    return found


def log_level_for(args: argparse.Namespace, configured: str | None = None) -> str:
    """The flag, then $TUNER_LOG_LEVEL (when valid), then ``configured`` (the daemon config), then warning."""
    env = os.environ.get("TUNER_LOG_LEVEL", "").strip().lower()
    return args.log_level or (env if env in LOG_LEVELS else None) or configured or "warning"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(log_level_for(args), json=args.log_json)
    log = get_logger("tuner.cli")
    try:
        return int(args.func(args) or EXIT_OK)
    except TunerError as err:
        log.debug("command.failed", command=args.command, error=type(err).__name__, message=err.message)
        print(f"{journal_prefix('error')}tuner {args.command}: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"{journal_prefix('error')}  hint: {err.hint}", file=sys.stderr)
        if getattr(args, "json", False):  # scripts get the failure as JSON on stdout too
            _print_error_json(err, exit_code_for(err))
        return exit_code_for(err)
    except KeyboardInterrupt:
        print(f"{journal_prefix('warning')}tuner {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `tuner knobs | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
