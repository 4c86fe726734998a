"""The persistent state: round trip, atomic replacement, and a corrupt file set aside."""

from __future__ import annotations

import json

from tuner.daemon.regression import GuardWatch, Signals
from tuner.daemon.state import (
    AppliedRecord,
    DaemonState,
    ManualKnob,
    OwnedKnob,
    PendingApply,
    ProfileRecord,
    SearchActivity,
    load_state,
    read_state,
    save_state,
)
from tuner.daemon.watch import SearchQueue, ServiceRecord, Signature


def full_state() -> DaemonState:
    sig = Signature("tcp server :80", "bulk", 0.01, 1e8, 0.0, frozenset({"receive-window-limited"}))
    return DaemonState(
        pid=42,
        started=1.0,
        mode="apply",
        enabled=True,
        config="/etc/tuner/tuner.toml",
        netns="ns",
        activity="watching",
        services={
            sig.key: ServiceRecord(
                sig.key, sig, sig, 1.0, 2.0, 3, "nginx[1]", {"kind": "bulk"}, {"rtt": 0.01}, 5.0, "/p.toml"
            )
        },
        queue=SearchQueue(),
        search=SearchActivity("tcp server :80", "new service", 99, 3.0, 2, 8, "best 1"),
        profiles=[ProfileRecord("p", "/p.toml", sig.key, 4.0, "new service", {"gain": "2x"})],
        applied=[
            AppliedRecord(
                "a1",
                "p",
                "/p.toml",
                sig.key,
                5.0,
                {"net.ipv4.tcp_rmem": {"old": (4096, 131072, 6291456), "new": (4096, 1, 2)}},
                {"net.core.rmem_max": "host-only"},
                "guarding",
                [],
                "/j",
            )
        ],
        owned={"net.ipv4.tcp_rmem": OwnedKnob((4096, 1, 2), "a1", "p", 5.0)},
        manual={"net.core.somaxconn": ManualKnob(6.0, 4096, 128, "unknown writer")},
        guard=GuardWatch(
            "a1", "p", 5.0, 65.0, Signals({"x": 1.0}, None, {"s": 0.1}, frozenset({("s", "y")}))
        ),
        pending=[PendingApply("/q.toml", None, "staged")],
        rejected={"/bad.toml": "rolled back"},
        last_observation={"at": 7.0, "services": []},
    )


def test_state_round_trips_through_the_file(tmp_path):
    state = full_state()
    state.queue.offer("x", "new", 1.0)
    path = tmp_path / "state.json"
    save_state(state, path)
    again = read_state(path)
    assert again.to_dict() == state.to_dict()
    assert again.owned["net.ipv4.tcp_rmem"].value == [4096, 1, 2]  # JSON data; compared via normalize()


def test_missing_state_is_an_empty_state(tmp_path):
    state, problem = load_state(tmp_path / "state.json")
    assert problem is None and state.services == {}


def test_corrupt_state_is_set_aside_and_reported(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b'{"version": 1, "services": {"x": ')
    state, problem = load_state(path)
    assert state.to_dict() == DaemonState().to_dict()
    assert problem and "set aside" in problem
    assert not path.exists()
    [aside] = list(tmp_path.glob("state.json.corrupt-*"))
    assert aside.read_bytes().startswith(b'{"version": 1')


def test_wrong_shape_and_unknown_version_count_as_corrupt(tmp_path):
    for content in ('{"version": 99}', "[1, 2]", '{"version": 1, "services": {"x": {"key": 1}}}'):
        path = tmp_path / "state.json"
        path.write_text(content)
        _, problem = load_state(path)
        assert problem, content


def test_save_replaces_atomically_leaving_no_temporary_files(tmp_path):
    path = tmp_path / "state.json"
    for i in range(3):
        s = DaemonState(pid=i)
        save_state(s, path)
    assert json.loads(path.read_text())["pid"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_pending_applies_keep_their_json_shape_on_disk(tmp_path):
    """A state file written before PendingApply existed (a list of plain objects) still loads."""
    path = tmp_path / "state.json"
    save_state(DaemonState(), path)
    data = json.loads(path.read_text())
    data["pending"] = [
        {"file": "/a.toml", "service": "tcp server :80", "reason": "search result"},
        {"file": "/b.toml", "service": None, "reason": "staged"},
    ]
    path.write_text(json.dumps(data))
    state = read_state(path)
    assert state.pending == [
        PendingApply("/a.toml", "tcp server :80", "search result"),
        PendingApply("/b.toml", None, "staged"),
    ]
    assert state.to_dict()["pending"] == data["pending"]


def test_a_pending_apply_without_a_file_counts_as_corrupt(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "pending": [{"service": None, "reason": "staged"}]}))
    state, problem = load_state(path)
    assert problem and "set aside" in problem and state.pending == []


def test_queueing_a_profile_again_moves_it_last_once_and_the_saved_queue_is_bounded(tmp_path):
    state = DaemonState()
    state.queue_apply(PendingApply("/a.toml", "a", "search result"))
    state.queue_apply(PendingApply("/b.toml", None, "staged"))
    state.queue_apply(PendingApply("/a.toml", "a", "search result"))
    assert [p.file for p in state.pending] == ["/b.toml", "/a.toml"]
    for i in range(500):
        state.queue_apply(PendingApply(f"/{i}.toml", None, "staged"))
    saved = state.to_dict()["pending"]
    assert len(saved) < 500 and saved[-1]["file"] == "/499.toml"


def test_a_new_profile_record_replaces_the_old_one_and_clears_its_rejection():
    state = DaemonState(rejected={"/p.toml": "rolled back"})
    state.add_profile(ProfileRecord("p", "/p.toml", "s", 1.0, "new service"))
    state.add_profile(ProfileRecord("p", "/p.toml", "s", 2.0, "changed"))
    assert [p.created for p in state.profiles] == [2.0] and state.rejected == {}
