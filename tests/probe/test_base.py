"""Starting a workload's server: one that never gets ready is not left running in the (reused) sandbox."""

from __future__ import annotations

import time

import pytest

from tuner.probe.base import RepeatEnv, ServerCrashed, start_server
from tuner.probe.board import Board, BoardTimeout
from tuner.probe.sockopts import SocketOptions
from tuner.sandbox import Sandbox, Side
from tuner.workload import NetworkPath, Workload, WorkloadKind

pytestmark = pytest.mark.root


def _never_ready() -> None:
    time.sleep(60)


def _dies_at_once() -> None:
    raise RuntimeError("cannot bind")


def _env(sb: Sandbox) -> RepeatEnv:
    return RepeatEnv(
        sandbox=sb,
        workload=Workload(kind=WorkloadKind.RR),
        path=NetworkPath(),
        options=SocketOptions.from_assignment({}),
        duration=0.1,
        warmup=0.0,
        client_side=Side.CLIENT,
        server_side=Side.SERVER,
    )


def test_a_server_that_never_gets_ready_is_stopped_before_the_error_is_raised():
    with Sandbox() as sb:
        with pytest.raises(BoardTimeout):
            start_server(_env(sb), Board("port"), _never_ready, timeout=0.3)
        assert sb.helper_pids() == [], "the hung server is still running in the sandbox"


def test_a_server_that_dies_reports_its_own_error():
    with Sandbox() as sb:
        with pytest.raises(ServerCrashed, match="cannot bind"):
            start_server(_env(sb), Board("port"), _dies_at_once, timeout=5.0)
        assert sb.helper_pids() == []
