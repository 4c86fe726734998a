"""`tuner install-units`: write the shipped systemd units with ExecStart pointing at this tuner.

The units in the package say ``/usr/local/bin/tuner`` (where a root ``pip install`` puts the script); a
tuner in a virtual environment or elsewhere gets units that run this interpreter's ``-m tuner``, so
the service runs exactly the tuner that installed it.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from tuner.cli.output import print_json, require_root
from tuner.errors import InputError
from tuner.trusted import atomic_write

__all__ = ["register", "unit_texts"]

PLACEHOLDER = "/usr/local/bin/tuner"
UNITS = ("tuner.service", "tuner-apply@.service")


_HOMES = ("/home/", "/root/", "/run/user/")


def unit_texts(command: str) -> dict[str, str]:
    """The shipped units with ``command`` in their Exec lines instead of the default script path. A tuner
    installed under a home directory needs ProtectHome=read-only instead of yes to be found at all."""
    shipped = resources.files("tuner").joinpath("data", "systemd")
    texts = {}
    for name in UNITS:
        lines = shipped.joinpath(name).read_text().splitlines(keepends=True)
        lines = [ln.replace(PLACEHOLDER, command) if ln.startswith("Exec") else ln for ln in lines]
        text = "".join(lines)
        if command.startswith(_HOMES):
            text = text.replace(
                "\nProtectHome=yes\n",
                "\n# tuner lives in a home directory: readable, not writable\nProtectHome=read-only\n",
            )
        texts[name] = text
    return texts


def cmd_install_units(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    if not dest.is_dir():
        raise InputError(f"{dest} is not a directory", hint="create it, or give another --dest")
    command = args.command_path or f"{Path(sys.executable).absolute()} -m tuner"
    texts = unit_texts(command)
    if not args.dry_run:
        if dest == Path("/etc/systemd/system"):
            require_root("tuner install-units")
        for name, text in texts.items():
            atomic_write(dest / name, text.encode(), mode=0o644)
    files = [str(dest / name) for name in texts]
    if args.json:
        print_json({"changed": not args.dry_run, "files": files, "exec": command})
        return 0
    verb = "would write" if args.dry_run else "wrote"
    for f in files:
        print(f"{verb} {f}")
    print(f"ExecStart runs: {command}")
    if not args.dry_run:
        print("next: systemctl daemon-reload && systemctl enable --now tuner.service")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "install-units",
        help="write the systemd units (tuner.service, tuner-apply@.service)",
        description="Write the shipped systemd units into --dest with ExecStart set to this "
        "tuner (its Python interpreter with -m tuner), so the service runs the "
        "installation you ran this from.",
    )
    p.add_argument(
        "--dest",
        default="/etc/systemd/system",
        metavar="DIR",
        help="directory to write the units to (default: /etc/systemd/system)",
    )
    p.add_argument(
        "--command-path",
        metavar="CMD",
        help="ExecStart command instead of this interpreter's `-m tuner` (e.g. /usr/local/bin/tuner)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be written")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_install_units)
