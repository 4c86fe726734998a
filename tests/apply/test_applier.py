"""Plan, apply, verify and rollback over a fake /proc/sys tree (real files, real OSErrors)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tuner.apply import (
    ABSENT_REASON,
    HOST_ONLY_REASON,
    Applier,
    Change,
    FileWrite,
    Target,
    ensure_state_dir,
    make_plan,
    rollback,
    verify,
)
from tuner.errors import ApplyError, StateError, UnsafeFileError
from tuner.knobs import SysctlTree, get_knob
from tuner.profiles import Profile

PROFILE = Profile(
    name="t",
    sysctl={
        "net.core.somaxconn": 8192,
        "net.ipv4.tcp_rmem": (4096, 87380, 16777216),
        "net.ipv4.tcp_fin_timeout": 15,
        "net.core.rmem_max": 16777216,
    },
    socket={"TCP_NODELAY": True},
)
ORDER = ["net.core.somaxconn", "net.ipv4.tcp_rmem", "net.ipv4.tcp_fin_timeout", "net.core.rmem_max"]


def journal_ops(state: Path) -> list[str]:
    text = (state / "host.journal").read_text()
    return [json.loads(line)["op"] for line in text.splitlines()]


# --- plan and verify -----------------------------------------------------------------------------


def test_the_plan_lists_changes_in_catalogue_order_and_writes_nothing(tree, snap, tmp_path):
    before = snap()
    files_before = sorted(tmp_path.rglob("*"))
    plan = make_plan(PROFILE, tree)
    assert [c.knob for c in plan.changes] == ORDER
    assert plan.changes[0] == Change("net.core.somaxconn", 4096, 8192)
    assert plan.unchanged == () and plan.not_applicable == ()
    assert plan.socket == {"TCP_NODELAY": True}
    assert snap() == before and sorted(tmp_path.rglob("*")) == files_before


def test_values_already_live_are_unchanged_and_absent_knobs_not_applicable(tree, fake_proc_sys):
    (fake_proc_sys / "net" / "core" / "rmem_max").unlink()
    tree.write(get_knob("net.ipv4.tcp_fin_timeout"), 15)
    plan = make_plan(PROFILE, tree)
    assert [s.knob for s in plan.unchanged] == ["net.ipv4.tcp_fin_timeout"]
    assert [(n.knob, n.reason) for n in plan.not_applicable] == [("net.core.rmem_max", ABSENT_REASON)]


def test_host_knobs_do_not_apply_to_a_namespace_target(tree):
    plan = make_plan(PROFILE, tree, target=Target("some-ns"))
    assert [(n.knob, n.reason) for n in plan.not_applicable] == [("net.core.rmem_max", HOST_ONLY_REASON)]
    assert "net.core.rmem_max" not in [c.knob for c in plan.changes]


def test_verify_reports_per_key_drift_and_not_absent_knobs(tree, fake_proc_sys, state):
    drift = verify(PROFILE, tree)
    assert next((d.knob, d.expected, d.live) for d in drift) == ("net.core.somaxconn", 8192, 4096)
    Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    assert verify(PROFILE, tree) == []
    tree.write(get_knob("net.ipv4.tcp_fin_timeout"), 30)
    (fake_proc_sys / "net" / "core" / "rmem_max").unlink()
    assert [(d.knob, d.expected, d.live) for d in verify(PROFILE, tree)] == [
        ("net.ipv4.tcp_fin_timeout", 15, 30)
    ]


# --- apply ---------------------------------------------------------------------------------------


def test_apply_writes_the_plan_and_journals_each_original_first(tree, snap, state):
    before = snap()
    changes = Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    assert [c.knob for c in changes] == ORDER
    assert tree.read(get_knob("net.ipv4.tcp_rmem")) == (4096, 87380, 16777216)
    records = [json.loads(line) for line in (state / "host.journal").read_text().splitlines()]
    assert [r["op"] for r in records] == ["begin", "set", "set", "set", "set", "commit"]
    assert {r["knob"]: r["old"] for r in records if r["op"] == "set"} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in before.items() if k in ORDER
    }


def test_applying_twice_changes_nothing_the_second_time(tree, state):
    Applier(state, tree).apply(make_plan(PROFILE, tree), "first")
    journal = (state / "host.journal").read_bytes()
    plan = make_plan(PROFILE, tree)
    assert plan.empty
    assert Applier(state, tree).apply(plan, "second") == []
    assert (state / "host.journal").read_bytes() == journal


def test_a_stale_plan_does_not_rewrite_values_that_are_already_live(tree, state):
    plan = make_plan(PROFILE, tree)
    tree.write(get_knob("net.core.somaxconn"), 8192)  # someone got there between plan and apply
    changes = Applier(state, tree).apply(plan, "test")
    assert "net.core.somaxconn" not in [c.knob for c in changes]


@pytest.mark.root  # the immutable attribute needs CAP_LINUX_IMMUTABLE
def test_a_write_failing_midway_restores_every_earlier_write(tree, snap, state, fake_proc_sys, immutable):
    before = snap()
    immutable(fake_proc_sys / "net" / "ipv4" / "tcp_fin_timeout")  # the third write fails with EPERM
    with pytest.raises(ApplyError) as info:
        Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    err = info.value
    assert err.knob == "net.ipv4.tcp_fin_timeout" and err.restored and "Operation not permitted" in err.reason
    assert "restored" in err.message
    assert snap() == before
    assert journal_ops(state) == ["begin", "set", "set", "set", "abort"]
    assert rollback(state, tree) == []  # nothing outstanding


@pytest.mark.root
def test_a_persist_file_that_cannot_be_written_undoes_the_sysctls_too(tree, snap, state, tmp_path, immutable):
    etc = tmp_path / "etc"
    etc.mkdir()
    immutable(etc)
    before = snap()
    with pytest.raises(ApplyError) as info:
        Applier(state, tree).apply(
            make_plan(PROFILE, tree), "test", files=[FileWrite(etc / "90.conf", b"x\n")]
        )
    assert info.value.knob == str(etc / "90.conf") and info.value.restored
    assert snap() == before and not (etc / "90.conf").exists()


def test_a_knob_that_vanishes_between_plan_and_apply_fails_the_apply_and_restores(
    tree, snap, state, fake_proc_sys
):
    before = snap()
    plan = make_plan(PROFILE, tree)
    path = fake_proc_sys / "net" / "ipv4" / "tcp_fin_timeout"
    path.unlink()
    path.mkdir()
    with pytest.raises(ApplyError, match="no longer available") as info:
        Applier(state, tree).apply(plan, "test")
    assert info.value.restored
    assert {k: v for k, v in snap().items() if k != "net.ipv4.tcp_fin_timeout"} == {
        k: v for k, v in before.items() if k != "net.ipv4.tcp_fin_timeout"
    }


@dataclass(frozen=True)
class ClampingTree(SysctlTree):
    """A kernel that silently stores another value for one knob."""

    def write(self, knob, value):
        super().write(knob, 30 if (knob.name, value) == ("net.ipv4.tcp_fin_timeout", 15) else value)


def test_a_value_the_kernel_does_not_keep_counts_as_a_failed_write(fake_proc_sys, snap, state):
    before = snap()
    tree = ClampingTree(fake_proc_sys)
    with pytest.raises(ApplyError, match="the kernel kept 30") as info:
        Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    assert info.value.restored and snap() == before


# --- a process killed in the middle of an apply --------------------------------------------------


@dataclass(frozen=True)
class PausingTree(SysctlTree):
    """Stops for good at write number ``pause_at``, before or after doing it, and says so via ``marker``."""

    marker: Path = Path("/nonexistent")
    pause_at: int = 2
    write_first: bool = True
    calls: list = field(default_factory=list)

    def write(self, knob, value):
        self.calls.append(knob.name)
        pause = len(self.calls) == self.pause_at
        if pause and not self.write_first:
            self._stop()
        super().write(knob, value)
        if pause:
            self._stop()

    def _stop(self):
        self.marker.touch()
        time.sleep(60)


def _apply_and_get_killed(root: Path, state: Path, marker: Path, *, write_first: bool) -> None:
    plan = make_plan(PROFILE, SysctlTree(root))
    pid = os.fork()
    if pid == 0:  # the child: a real process that dies by SIGKILL in the middle of the apply
        try:
            Applier(state, PausingTree(root, marker=marker, write_first=write_first)).apply(plan, "killed")
        finally:
            os._exit(1)
    try:
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline, "the child never reached its pause"
            time.sleep(0.01)
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("write_first", [True, False], ids=["killed-after-a-write", "killed-before-a-write"])
def test_rollback_after_a_kill_midway_restores_the_recorded_originals(
    fake_proc_sys, tree, snap, state, tmp_path, write_first
):
    before = snap()
    _apply_and_get_killed(fake_proc_sys, state, tmp_path / "paused", write_first=write_first)
    changed = {k for k, v in snap().items() if v != before[k]}
    assert changed == ({"net.core.somaxconn", "net.ipv4.tcp_rmem"} if write_first else {"net.core.somaxconn"})
    assert journal_ops(state) == ["begin", "set", "set"]  # both announced before the kill, no commit
    restored = rollback(state, tree)
    assert [c.knob for c in restored] == sorted(changed, key=ORDER.index, reverse=True)
    assert snap() == before
    assert (state / "host.journal").read_bytes() == b""  # nothing outstanding: compacted


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_undoes_several_applies_newest_first(tree, snap, state):
    before = snap()
    first = Profile(name="first", sysctl={"net.core.somaxconn": 8192})
    second = Profile(name="second", sysctl={"net.core.somaxconn": 16384, "net.ipv4.tcp_fin_timeout": 20})
    Applier(state, tree).apply(make_plan(first, tree), "one")
    Applier(state, tree).apply(make_plan(second, tree), "two")
    restored = rollback(state, tree)
    assert restored == [
        Change("net.ipv4.tcp_fin_timeout", 20, 60),
        Change("net.core.somaxconn", 16384, 8192),
        Change("net.core.somaxconn", 8192, 4096),
    ]
    assert snap() == before
    assert rollback(state, tree) == []


def test_rollback_refuses_a_value_changed_by_someone_else_since_and_force_restores_it(tree, snap, state):
    before = snap()
    Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    tree.write(get_knob("net.core.somaxconn"), 1000)
    changed = snap()
    with pytest.raises(ApplyError, match="changed by someone else"):
        rollback(state, tree)
    assert snap() == changed  # nothing rolled back, not even the other knobs
    rollback(state, tree, force=True)
    assert snap() == before


def test_a_partial_last_journal_line_is_ignored(tree, snap, state):
    before = snap()
    Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    with open(state / "host.journal", "a") as f:
        f.write('{"op":"set","txn":"abc","knob":"net.core.som')
    rollback(state, tree)
    assert snap() == before


def test_a_damaged_journal_is_refused_and_nothing_is_written(tree, snap, state):
    Applier(state, tree).apply(make_plan(PROFILE, tree), "test")
    after = snap()
    journal = state / "host.journal"
    journal.write_text(
        journal.read_text().replace('"knob":"net.core.somaxconn"', '"knob":"kernel.core_pattern"')
    )
    with pytest.raises(StateError, match="line 2 is damaged"):
        rollback(state, tree)
    journal.write_text("garbage\n")
    with pytest.raises(StateError, match="line 1 is damaged"):
        rollback(state, tree)
    assert snap() == after


def test_a_state_dir_others_can_write_is_not_trusted(tree, state):
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    with pytest.raises(UnsafeFileError, match="writable by group or others"):
        Applier(state, tree).apply(make_plan(PROFILE, tree), "test")


def test_a_second_applier_on_the_same_target_is_refused_while_the_first_works(tree, state):
    ensure_state_dir(state)
    with open(state / "host.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(StateError, match="another tuner apply or rollback"):
            Applier(state, tree).apply(make_plan(PROFILE, tree), "test")


def test_rollback_with_no_journal_does_nothing_and_creates_no_state(tree, state):
    assert rollback(state, tree) == []
    assert not state.exists()


def test_a_plan_is_only_applied_to_the_target_it_was_made_for(tree, state):
    with pytest.raises(ValueError, match="cannot be applied"):
        Applier(state, tree).apply(make_plan(PROFILE, tree, target=Target("ns-a")), "test")


def test_targets_keep_separate_journals(tree, state):
    Applier(state, tree, target=Target("ns-a")).apply(make_plan(PROFILE, tree, target=Target("ns-a")), "test")
    assert (state / "netns-ns-a.journal").stat().st_size > 0
    assert rollback(state, tree) == []  # the host has nothing to undo
    assert len(rollback(state, tree, target=Target("ns-a"))) == 3


# --- persisted sysctl.d files --------------------------------------------------------------------


def test_a_persisted_file_is_written_atomically_journaled_and_rolled_back(tree, state, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    fresh, existing = etc / "90-new.conf", etc / "80-old.conf"
    existing.write_bytes(b"net.core.somaxconn = 1\n")
    files = [
        FileWrite(fresh, b"net.core.somaxconn = 8192\n"),
        FileWrite(existing, b"net.core.somaxconn = 8192\n"),
    ]
    applier = Applier(state, tree)
    applier.apply(make_plan(PROFILE, tree), "test", files=files)
    assert applier.written_files == (fresh, existing)
    assert fresh.read_bytes() == existing.read_bytes() == b"net.core.somaxconn = 8192\n"
    assert sorted(p.name for p in etc.iterdir()) == ["80-old.conf", "90-new.conf"]  # no temporary files left
    assert Applier(state, tree).apply(make_plan(PROFILE, tree), "again", files=files) == []
    rollback(state, tree)
    assert not fresh.exists() and existing.read_bytes() == b"net.core.somaxconn = 1\n"
