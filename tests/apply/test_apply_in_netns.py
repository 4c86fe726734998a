"""Apply, verify and roll back real sysctls inside a network namespace the test creates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.apply import HOST_ONLY_REASON, Applier, Change, Plan, Target, make_plan, run_in_target, verify
from tuner.errors import ApplyError
from tuner.knobs import CATALOGUE, SysctlTree
from tuner.profiles import Profile

pytestmark = pytest.mark.root

PROFILE = Profile(
    name="ns",
    sysctl={
        "net.core.somaxconn": 1234,
        "net.ipv4.tcp_rmem": (4096, 65536, 2097152),
        "net.ipv4.tcp_slow_start_after_idle": False,
        "net.ipv4.ip_local_port_range": (20000, 50000),
        "net.ipv4.tcp_fin_timeout": 17,
        "net.core.rmem_max": 8388608,  # host-wide: must not be touched in a namespace
    },
)


def live() -> dict[str, object]:
    tree = SysctlTree()
    return {n: tree.read(k) for n, k in CATALOGUE.items() if k.is_sysctl}


def apply_here(state: Path, target: Target) -> tuple[Plan, list[Change]]:
    tree = SysctlTree()
    plan = make_plan(PROFILE, tree, target=target)
    return plan, Applier(state, tree, target=target).apply(plan, "test")


def rollback_here(state: Path, target: Target) -> list[Change]:
    return Applier(state, SysctlTree(), target=target).rollback()


def test_apply_verify_and_rollback_real_sysctls_in_a_namespace(netns, tmp_path):
    target = Target(netns)
    host_before = live()
    ns_before = run_in_target(target, live)
    plan, changes = run_in_target(target, apply_here, tmp_path, target)
    assert [(n.knob, n.reason) for n in plan.not_applicable] == [("net.core.rmem_max", HOST_ONLY_REASON)]
    assert len(changes) == 5
    ns_after = run_in_target(target, live)
    assert ns_after["net.core.somaxconn"] == 1234 and ns_after["net.ipv4.tcp_rmem"] == (4096, 65536, 2097152)
    assert ns_after["net.core.rmem_max"] == ns_before["net.core.rmem_max"]
    assert run_in_target(target, verify, PROFILE, SysctlTree(), target=target) == []
    assert live() == host_before  # the host never saw any of it
    assert (tmp_path / f"{target.key}.journal").stat().st_size > 0  # state in the state dir, keyed by target

    assert run_in_target(target, apply_here, tmp_path, target)[1] == []  # idempotent
    restored = run_in_target(target, rollback_here, tmp_path, target)
    assert next(c.knob for c in restored) == "net.ipv4.ip_local_port_range"  # newest first
    assert run_in_target(target, live) == ns_before
    assert len(run_in_target(target, verify, PROFILE, SysctlTree(), target=target)) == 5


def _apply_plan_here(state: Path, plan: Plan) -> None:
    Applier(state, SysctlTree(), target=plan.target).apply(plan, "test")


def test_a_write_the_kernel_refuses_midway_restores_the_real_earlier_writes(netns, tmp_path):
    target = Target(netns)
    before = run_in_target(target, live)
    # Built by hand to get past validation: the kernel itself refuses a port range with low > high.
    plan = Plan(
        "refused",
        target,
        (
            Change("net.core.somaxconn", before["net.core.somaxconn"], 999),
            Change("net.ipv4.tcp_fin_timeout", before["net.ipv4.tcp_fin_timeout"], 21),
            Change("net.ipv4.ip_local_port_range", before["net.ipv4.ip_local_port_range"], (60000, 1000)),
        ),
        (),
        (),
    )
    with pytest.raises(ApplyError) as info:
        run_in_target(target, _apply_plan_here, tmp_path, plan)
    assert info.value.knob == "net.ipv4.ip_local_port_range" and info.value.restored
    assert "Invalid argument" in info.value.reason
    assert run_in_target(target, live) == before
