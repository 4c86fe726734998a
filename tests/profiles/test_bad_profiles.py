"""The bad-profile corpus (tests/profiles/bad/): every file is refused, naming the file, key and line.

Each corpus file says what it checks in its first lines: ``# expect-key: KEY`` (the TOML key path the
message must name) and a ``# <-`` marker on the line the message must point at. The CLI side (exit
code 2, nothing written in a namespace, no state) is in tests/cli/test_apply_cli.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tuner.apply import Applier, make_plan
from tuner.errors import ProfileError
from tuner.knobs import CATALOGUE, KernelFacts, SysctlTree
from tuner.profiles import MAX_PROFILE_BYTES, load_profile

BAD = Path(__file__).parent / "bad"
CORPUS = sorted(BAD.iterdir())


def expectations(file: Path) -> tuple[str | None, int | None]:
    """(key the message must name, line it must point at) as the corpus file declares them."""
    text = file.read_bytes().decode("utf-8", errors="replace")
    key = re.search(r"^# expect-key: (.*)$", text, re.M)
    line = next((n for n, raw in enumerate(text.splitlines(), start=1) if "# <-" in raw), None)
    return (key.group(1) if key else None), line


def check_message(message: str, file: Path) -> None:
    key, line = expectations(file)
    assert str(file) in message
    if key:
        assert f"[{key}]" in message
    if line:
        assert f"{file}:{line}:" in message


def test_the_corpus_has_at_least_25_bad_profiles():
    assert len(CORPUS) >= 25
    assert all(f.suffix == ".toml" for f in CORPUS)


@pytest.mark.parametrize("file", CORPUS, ids=lambda f: f.name)
def test_every_bad_profile_is_refused_naming_file_key_and_line(file, fake_proc_sys):
    with pytest.raises(ProfileError) as info:
        load_profile(file, facts=KernelFacts.read(fake_proc_sys))
    check_message(info.value.message, file)
    assert info.value.hint


def test_a_10_mb_file_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "w") as f:
        f.write('version = 1\n[profile]\nname = "big"\n')
        f.write(("# " + "x" * 1021 + "\n") * (10 * 1024))
    assert big.stat().st_size > 10 * 10**6
    start = time.monotonic()
    with pytest.raises(ProfileError, match=f"at most {MAX_PROFILE_BYTES} bytes") as info:
        load_profile(big)
    assert time.monotonic() - start < 1.0
    assert str(big) in info.value.message


def test_a_refused_profile_leaves_the_tree_and_the_state_dir_untouched(fake_proc_sys, tmp_path):
    """The deploy pipeline (load, plan, apply) stops at the load: nothing else runs."""
    tree = SysctlTree(fake_proc_sys)
    before = {n: tree.read(k) for n, k in CATALOGUE.items() if k.is_sysctl}
    state = tmp_path / "state"
    for file in CORPUS:
        with pytest.raises(ProfileError):
            profile = load_profile(file, facts=KernelFacts.read(fake_proc_sys))
            Applier(state, tree).apply(make_plan(profile, tree), "test")
    assert {n: tree.read(k) for n, k in CATALOGUE.items() if k.is_sysctl} == before
    assert not state.exists()
