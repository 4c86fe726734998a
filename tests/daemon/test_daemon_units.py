"""The units the service loop delegates to, without a loop: manual overrides and staged profiles."""

from __future__ import annotations

from dataclasses import replace

from tuner.daemon.config import Mode, parse_config
from tuner.daemon.control import ControlDir
from tuner.daemon.guarded import GuardedApply
from tuner.daemon.manual import ManualKnobs
from tuner.daemon.state import DaemonState, OwnedKnob, PendingApply
from tuner.profiles import Profile


class FakeTarget:
    """Live values to read; anything else a test reaching it would be a bug."""

    in_netns = True

    def __init__(self, live):
        self.live = live

    def read(self, names):
        return {n: self.live.get(n) for n in names}


def owned_state() -> DaemonState:
    return DaemonState(
        owned={
            "net.core.somaxconn": OwnedKnob(4096, "a1", "p", 1.0),
            "net.ipv4.tcp_fin_timeout": OwnedKnob(30, "a1", "p", 1.0),
        }
    )


def test_a_knob_changed_behind_the_daemons_back_becomes_manual_until_released():
    state = owned_state()
    manual = ManualKnobs(
        state, FakeTarget({"net.core.somaxconn": 128, "net.ipv4.tcp_fin_timeout": 30}), lambda: 9.0
    )
    manual.check()
    assert set(state.owned) == {"net.ipv4.tcp_fin_timeout"}
    mark = state.manual["net.core.somaxconn"]
    assert (mark.since, mark.expected, mark.found) == (9.0, 4096, 128)
    manual.release("net.core.somaxconn")
    manual.release("net.core.somaxconn")  # not manual any more: ignored
    assert state.manual == {}


def test_nothing_is_read_when_the_daemon_owns_no_knob():
    class NoReads(FakeTarget):
        def read(self, names):
            raise AssertionError(names)

    assert ManualKnobs(DaemonState(), NoReads({}), lambda: 0.0).take_over({}) == []


def guarded(state: DaemonState, tmp_path, mode: Mode) -> GuardedApply:
    cfg = replace(parse_config(None), mode=mode)
    target = FakeTarget({})
    return GuardedApply(
        state,
        target,
        ManualKnobs(state, target, lambda: 5.0),
        state_dir=tmp_path,
        config=lambda: cfg,
        clock=lambda: 5.0,
    )


def test_staged_profiles_wait_in_recommend_mode_and_are_queued_in_apply_mode(tmp_path):
    control = ControlDir(tmp_path)
    control.stage(Profile(name="k", sysctl={"net.core.somaxconn": 4096}))
    state = DaemonState(rejected={str(tmp_path / "profiles" / "staged-k.toml"): "rolled back"})
    guarded(state, tmp_path, Mode.RECOMMEND).take_staged(control)
    guarded(state, tmp_path, Mode.RECOMMEND).take_staged(control)
    assert control.staged() == ["staged-k.toml"] and state.pending == []
    assert len([p for p in state.problems if "staged profiles wait" in p]) == 1
    guarded(state, tmp_path, Mode.APPLY).take_staged(control)
    dest = str(tmp_path / "profiles" / "staged-k.toml")
    assert control.staged() == [] and state.pending == [PendingApply(dest, None, "staged")]
    assert [(p.name, p.file, p.service) for p in state.profiles] == [("staged-k", dest, None)]
    assert state.rejected == {}  # staged again: a new candidate
