"""Completion scripts and the manual page come from the parser; the shipped copies are current."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tuner.cli.shell import DATA, SHIPPED, generate


@pytest.mark.parametrize("rel, kind", sorted(SHIPPED.items()))
def test_the_shipped_file_is_what_the_parser_generates(rel, kind):
    assert (DATA / rel).read_text() == generate(kind), (
        f"tuner/data/{rel} is stale: run `python -m tuner.cli.shell --write` after changing the command line"
    )


def test_the_bash_completion_is_valid_bash_and_knows_the_verbs(tmp_path):
    script = generate("bash")
    for verb in ("recommend", "apply", "profiles", "install-units", "--log-level"):
        assert verb in script
    (tmp_path / "c.bash").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "c.bash")]).returncode == 0


@pytest.mark.skipif(
    shutil.which("groff") is None and shutil.which("nroff") is None, reason="no roff formatter"
)
def test_the_manual_page_formats(tmp_path):
    (tmp_path / "tuner.1").write_text(generate("man"))
    tool = shutil.which("nroff") or shutil.which("groff")
    done = subprocess.run([tool, "-man", str(tmp_path / "tuner.1")], capture_output=True, text=True)
    assert done.returncode == 0 and "recommend" in done.stdout
