"""What the daemon decides from observations: changed services and the search queue (pure)."""

from __future__ import annotations

from dataclasses import replace

from tuner.daemon.config import ServiceSelection, parse_config
from tuner.daemon.watch import (
    CHANGE_AGREE,
    Observed,
    SearchQueue,
    ServiceRecord,
    Signature,
    TriggerReason,
    compare,
    track,
)

CFG = parse_config(None).observe
ALL = replace(CFG, services=ServiceSelection.ALL)
WL = {"kind": "rr"}


def sig(key="tcp server :80", cls="request/response", rtt=0.010, rate=None, loss=0.0, symptoms=()):
    return Signature(key, cls, rtt, rate, loss, frozenset(symptoms))


def test_a_service_never_judged_is_new():
    [t] = compare(None, sig(symptoms=["listen-overflow"]), CFG)
    assert t.reason is TriggerReason.NEW_SERVICE and "listen-overflow" in t.detail


def test_same_signature_is_no_change():
    assert compare(sig(), sig(), CFG) == []


def test_class_change_path_move_and_new_symptom_are_each_reported():
    reasons = {
        t.reason for t in compare(sig(), sig(cls="bulk", rtt=0.050, symptoms=["nagle-delayed-ack"]), CFG)
    }
    assert reasons == {TriggerReason.CLASS_CHANGED, TriggerReason.PATH_MOVED, TriggerReason.NEW_SYMPTOM}


def test_small_rtt_jitter_below_the_floor_is_not_a_move():
    # loopback-like rtts: 50 us -> 150 us is +200% but far below the 1 ms floor
    assert compare(sig(rtt=50e-6), sig(rtt=150e-6), CFG) == []
    assert compare(sig(rtt=0.010), sig(rtt=0.014), CFG) == []  # +40% < 50%
    [t] = compare(sig(rtt=0.010), sig(rtt=0.020), CFG)
    assert t.reason is TriggerReason.PATH_MOVED


def test_rate_and_loss_moves():
    [t] = compare(sig(rate=100e6), sig(rate=10e6), CFG)
    assert "rate" in t.detail
    [t] = compare(sig(loss=0.0), sig(loss=0.05), CFG)
    assert "loss" in t.detail
    assert compare(sig(loss=0.0), sig(loss=0.005), CFG) == []


def test_a_symptom_that_went_away_is_not_a_trigger():
    assert compare(sig(symptoms=["listen-overflow"]), sig(), CFG) == []


def test_service_is_judged_only_after_it_settled():
    obs = [Observed(sig(symptoms=["listen-overflow"]), workload=WL, path={})]
    first = track({}, obs, 100.0, CFG)
    assert first.triggers == [] and first.records["tcp server :80"].streak == 1
    second = track(first.records, obs, 110.0, CFG)
    assert [t.reason for t in second.to_search] == [TriggerReason.NEW_SERVICE]
    third = track(second.records, obs, 120.0, CFG)
    assert third.triggers == [] and third.to_search == []  # fires once, not every tick


def test_with_symptoms_selection_skips_healthy_services_until_a_symptom_appears():
    healthy = [Observed(sig(), workload=WL, path={})]
    r = track({}, healthy, 1.0, CFG)
    r = track(r.records, healthy, 2.0, CFG)
    assert r.triggers and r.to_search == []
    sick = [Observed(sig(symptoms=["nagle-delayed-ack"]), workload=WL, path={})]
    r = track(r.records, sick, 3.0, CFG)
    assert [t.reason for t in r.to_search] == [TriggerReason.NEW_SYMPTOM]


def test_all_selection_searches_healthy_services_too():
    healthy = [Observed(sig(), workload=WL, path={})]
    r = track({}, healthy, 1.0, ALL)
    r = track(r.records, healthy, 2.0, ALL)
    assert len(r.to_search) == 1


def test_a_service_without_a_workload_is_never_searched():
    obs = [Observed(sig(symptoms=["listen-overflow"]), workload=None)]
    r = track({}, obs, 1.0, CFG)
    r = track(r.records, obs, 2.0, CFG)
    assert r.triggers and r.to_search == []


def test_absence_resets_the_streak_but_keeps_the_record():
    obs = [Observed(sig(), workload=WL)]
    r = track({}, obs, 1.0, CFG)
    r = track(r.records, [], 2.0, CFG)
    assert r.records["tcp server :80"].streak == 0
    assert r.records["tcp server :80"].first_seen == 1.0


def test_records_round_trip_through_json_data():
    obs = [Observed(sig(rate=5e6, symptoms=["a", "b"]), process="nginx[1]", workload=WL, path={"rtt": 0.01})]
    r = track({}, obs, 1.0, CFG)
    r = track(r.records, obs, 2.0, CFG)
    rec = r.records["tcp server :80"]
    from tuner.daemon.watch import ServiceRecord

    assert ServiceRecord.from_dict(rec.to_dict()) == rec


def test_queue_runs_one_at_a_time_first_come_first_served():
    q = SearchQueue()
    assert q.offer("a", "new", 1.0) and q.offer("b", "new", 2.0)
    assert not q.offer("a", "again", 3.0)  # one per service
    assert q.next_ready(10.0, {}, 3600, busy=True) is None
    assert q.next_ready(10.0, {}, 3600, busy=False).key == "a"
    assert q.next_ready(10.0, {}, 3600, busy=False).key == "b"
    assert q.next_ready(10.0, {}, 3600, busy=False) is None


def test_queue_respects_the_minimum_interval_without_blocking_others():
    q = SearchQueue()
    q.offer("recent", "path moved", 100.0)
    q.offer("fresh", "new", 101.0)
    last = {"recent": 90.0}
    assert q.next_ready(200.0, last, 3600, busy=False).key == "fresh"
    assert q.next_ready(200.0, last, 3600, busy=False) is None
    assert q.wait_time(200.0, last, 3600) == 3490.0
    assert q.next_ready(3690.0, last, 3600, busy=False).key == "recent"


def test_queue_round_trips():
    q = SearchQueue()
    q.offer("a", "x", 1.0)
    assert SearchQueue.from_list(q.to_list()) == q


def test_prune_forgets_old_services_without_profiles_and_caps_the_count():
    from tuner.daemon.watch import ServiceRecord, prune

    day = 86400.0
    recs = {
        "old": ServiceRecord("old", sig("old"), last_seen=0.0),
        "old-with-profile": ServiceRecord(
            "old-with-profile", sig("old-with-profile"), last_seen=0.0, profile="/p"
        ),
        "recent": ServiceRecord("recent", sig("recent"), last_seen=9 * day),
        "present": ServiceRecord("present", sig("present"), last_seen=1.0, streak=3),
    }
    kept = prune(recs, 10 * day, max_age=7 * day, max_count=10)
    assert set(kept) == {"old-with-profile", "recent", "present"}
    capped = prune(recs, 10 * day, max_age=7 * day, max_count=2)
    assert set(capped) == {"present", "recent"}  # present first, then the most recently seen


def _settled(first):
    r = track({}, [Observed(first, workload=WL, path={})], 1.0, ALL)
    return track(r.records, [Observed(first, workload=WL, path={})], 2.0, ALL)


def test_a_service_flipping_between_two_classes_every_cycle_is_not_re_searched():
    # a curl loop near the churn threshold: seen as churn, then idle, then churn...
    r = _settled(sig(cls="connection churn"))
    assert len(r.to_search) == 1
    for i, cls in enumerate(["long-lived idle", "connection churn"] * 4):
        r = track(r.records, [Observed(sig(cls=cls), workload=WL, path={})], 3.0 + i, ALL)
        assert r.triggers == [] and r.to_search == [], (i, cls)


def test_a_path_estimate_that_appears_and_vanishes_is_not_a_move():
    r = _settled(sig(rate=None, loss=0.0))
    for i, (rate, loss) in enumerate([(1e9, 0.11), (None, 0.0), (1e9, 0.0), (None, 0.11)] * 2):
        r = track(r.records, [Observed(sig(rate=rate, loss=loss), workload=WL, path={})], 3.0 + i, ALL)
        assert r.triggers == [], (i, rate, loss)


def test_a_class_change_that_lasts_is_searched_once_after_consecutive_agreeing_observations():
    r = _settled(sig(cls="request/response"))
    moved = [Observed(sig(cls="bulk", rtt=0.050), workload=WL, path={})]
    fired = []
    for i in range(6):
        r = track(r.records, moved, 3.0 + i, ALL)
        fired.append([t.reason for t in r.to_search])
    assert fired[: CHANGE_AGREE - 1] == [[]] * (CHANGE_AGREE - 1)
    assert fired[CHANGE_AGREE - 1] == [TriggerReason.CLASS_CHANGED]
    assert fired[CHANGE_AGREE:] == [[]] * (6 - CHANGE_AGREE)
    assert r.records["tcp server :80"].reference.service_class == "bulk"


def test_a_new_symptom_fires_at_once_without_adopting_a_passing_class():
    r = _settled(sig(cls="request/response"))
    r = track(
        r.records, [Observed(sig(cls="bulk", symptoms=["retransmissions"]), workload=WL, path={})], 3.0, ALL
    )
    assert [t.reason for t in r.to_search] == [TriggerReason.NEW_SYMPTOM]
    ref = r.records["tcp server :80"].reference
    assert ref.service_class == "request/response" and "retransmissions" in ref.symptoms
    restored = ServiceRecord.from_dict(r.records["tcp server :80"].to_dict())
    assert (
        restored.pending is not None
        and restored.pending.service_class == "bulk"
        and restored.pending_count == 1
    )
