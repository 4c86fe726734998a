"""`tuner completion bash|zsh` and `tuner manpage`: generated from the argparse parser itself.

The same texts are shipped in the package (``tuner/data/man/tuner.1``, ``tuner/data/completion/``) and
installed by the wheel into ``share/man/man1`` and the bash/zsh completion directories; a test checks the
shipped files are what the current parser generates (``python -m tuner.cli.shell --write`` renews them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner import __version__

__all__ = ["SHIPPED", "completion", "manpage", "register"]

DATA = Path(__file__).resolve().parents[1] / "data"
SHIPPED = {"man/tuner.1": "man", "completion/tuner.bash": "bash", "completion/_tuner": "zsh"}


def _parser() -> argparse.ArgumentParser:
    from tuner.cli import build_parser

    return build_parser()


def completion(shell: str) -> str:
    import shtab

    return shtab.complete(_parser(), shell=shell)


def manpage() -> str:
    from build_manpages.manpage import Manpage

    page = Manpage(
        _parser(),
        _data={
            "date": f"tuner {__version__}",
            "project_name": "tuner",
            "version": __version__,
            "manual_title": "tuner manual",
            "manual_section": "1",
        },
    )
    return str(page)


def generate(kind: str) -> str:
    return manpage() if kind == "man" else completion(kind)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion(args.shell))
    return 0


def cmd_manpage(args: argparse.Namespace) -> int:
    sys.stdout.write(manpage())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print the completion script for a shell, e.g. "
        "`tuner completion bash > /etc/bash_completion.d/tuner`.",
    )
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    p.set_defaults(func=cmd_completion)
    p = sub.add_parser(
        "manpage",
        help="print the manual page (roff)",
        description="Print tuner(1) as roff: `tuner manpage | man -l -`.",
    )
    p.set_defaults(func=cmd_manpage)


if __name__ == "__main__":  # python -m tuner.cli.shell --write: renew the shipped files
    if sys.argv[1:] == ["--write"]:
        for rel, kind in SHIPPED.items():
            (DATA / rel).parent.mkdir(parents=True, exist_ok=True)
            (DATA / rel).write_text(generate(kind))
            print(f"wrote {DATA / rel}")
