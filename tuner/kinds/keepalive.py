"""keepalive: idle connections whose peer silently disappears, judged over a lossy path."""

from __future__ import annotations

from tuner.kinds.spec import KindSpec
from tuner.probe import keepalive
from tuner.scoring import KeepaliveObjective
from tuner.workload import Workload, WorkloadKind

__all__ = ["KEEPALIVE"]

KEEPALIVE = KindSpec(
    kind=WorkloadKind.KEEPALIVE,
    # enough healthy connections that a setting which gives up on a live peer after one, two or three
    # lost probes shows false kills over a 1% loss path within a probe's healthy phase: with 512, idle 2 s
    # and interval 1 s, TCP_KEEPCNT 2 killed 13 in 10 repeats and every 2-repeat measurement showed a
    # kill; with 128 it killed 1 in 10, so 4 of 5 such measurements passed it and a search that tried it
    # recommended it (bench/results/keepalive_exposure.md, bench/search_seeds.py)
    workload=Workload(WorkloadKind.KEEPALIVE, idle_connections=512),
    probe=keepalive.run_repeat,
    objective=KeepaliveObjective(),
    knobs=("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"),
    # TCP_USER_TIMEOUT bounds how long *sent data* may stay unacknowledged; on these idle connections its
    # only effect is to cut the keepalive count short (the timer gives up at its first probe after the
    # timeout, tuner.probe.keepalive.Timers.rounds), which TCP_KEEPCNT does explicitly. Searched by
    # default it cost the design half its points: a 1 s or 3 s timeout gives up after one or two lost
    # probes and killed 59-85 live connections a repeat over the 1% loss path (three real searches at
    # seed 0 found nothing else), and replayed over 20 seeds at the default budget the search reached
    # 0.50 of the optimum with it, 0.81 without (bench/results/search_seeds.md). --knob adds it.
    optional_knobs=(
        "TCP_USER_TIMEOUT",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ),
    levels={
        # the probe waits at least keepalive.WINDOW_MIN (18 s) for a dead peer: the slowest setting of
        # these levels that detects at all (3 + 2 x 4 = 11 s) is measured within it (tests/search/test_space.py)
        "TCP_KEEPIDLE": (None, 1, 2, 3),
        "TCP_KEEPINTVL": (None, 1, 2),
        # 3 and 4 lost probes in a row: settings that a lossy path does not make give up on a live peer
        "TCP_KEEPCNT": (None, 1, 2, 3, 4),
        "TCP_USER_TIMEOUT": (None, 1000, 3000),
    },
    # keepalive repeats last up to ten durations (the detection window, 5 s here), so there are fewer
    repeats=2,
    duration=0.5,
    # keepalive settings must be judged on a realistic lossy path, where a lost probe (or its ACK) can make
    # them give up on a live peer
    default_loss=0.01,
    # its timers count whole seconds (TCP_USER_TIMEOUT levels are 1 s and more): a packet 20 ms late moves
    # a detection by 2% of the finest step. The delay line sleeps between the sparse keepalive packets and
    # a busy machine wakes it a millisecond or so late, which would spoil a repeat for nothing.
    max_late_p99_ms=20.0,
    # a repeat is a healthy phase of seconds and a dead-peer window of up to 18 s with the CPU idle: a
    # search measures its design, the model's batches and the confirmation side by side (8 measurements
    # of 2 repeats at once cost about one: bench/results/recommend_time.md). 30 sandboxes hold the last
    # search batch (4 candidates and 3 elimination runs of 2 repeats) with the confirmation's first round
    # (the baseline and two leaders, 5 repeats each), which then needs no ~20 s batch of its own
    side_by_side=30,
    # measured side by side, trials cost batches: 11 design points ride in the first batch with the
    # baseline (24 sandboxes) and the model's 4 in the second with the elimination and the confirmation's
    # first round, the two batches that 8 trials took. Replayed (bench/search_seeds.py), the setting a
    # search recommends reached a median 0.87 of the optimum at 8 trials (10 seeds), 1.0 at 15 (20 seeds)
    budget=15,
    # timers too slow for the healthy phase to show their risk (an unset TCP_KEEPIDLE inherits a stock
    # tcp_keepalive_time of 2 hours, an unset TCP_KEEPINTVL 75 s) are refused by the objective whatever
    # they measure, so the search does not spend trials on them: from the Debian stock sysctls, 30 of the
    # space's 61 distinct settings (tests/search/test_space.py)
    unjudgeable=lambda values, path: keepalive.risk_unjudged(values, path.loss),
)
