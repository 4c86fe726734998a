"""The sock_diag decoder against pyroute2's own decoder, on real dumps from a namespace the test creates."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from tuner.adapters import sockdiag
from tuner.adapters.sockdiag import SockDiag, decode_dump, decode_dump_with_pyroute2
from tuner.errors import EnvironmentProblem
from tuner.kernel import TCP_INFO, Proto, TcpState
from tuner.netns import run_in_netns

pytestmark = pytest.mark.root

_TCPI_FIELDS = {  # TcpInfo field -> pyroute2's tcp_info key
    "rtt_us": "tcpi_rtt",
    "rttvar_us": "tcpi_rttvar",
    "min_rtt_us": "tcpi_min_rtt",
    "cwnd": "tcpi_snd_cwnd",
    "total_retrans": "tcpi_total_retrans",
    "bytes_acked": "tcpi_bytes_acked",
    "bytes_received": "tcpi_bytes_received",
    "delivery_rate": "tcpi_delivery_rate",
    "segs_out": "tcpi_segs_out",
    "segs_in": "tcpi_segs_in",
    "busy_time_us": "tcpi_busy_time",
    "rwnd_limited_us": "tcpi_rwnd_limited",
    "sndbuf_limited_us": "tcpi_sndbuf_limited",
    "last_data_sent_ms": "tcpi_last_data_sent",
    "last_data_recv_ms": "tcpi_last_data_recv",
    "data_segs_out": "tcpi_data_segs_out",
    "snd_wnd": "tcpi_snd_wnd",
    "bytes_sent": "tcpi_bytes_sent",
    "ato_us": "tcpi_ato",
    "rcv_space": "tcpi_rcv_space",
}


def _pyroute2_name(field: str) -> str:
    """pyroute2's tcp_info key of a TCP_INFO table field."""
    if field == "cwnd":
        return "tcpi_snd_cwnd"
    return "tcpi_" + field.removesuffix("_us").removesuffix("_ms")


def _traffic_and_raw_dumps() -> dict[tuple[int, str], list[bytes]]:
    """Sockets of every kind in both families, then the raw dumps (taken while they are all open)."""
    keep = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        ls = socket.socket(family)
        ls.bind((host, 7000))
        ls.listen(5)
        c = socket.create_connection((host, 7000))
        s, _ = ls.accept()
        c.sendall(b"y" * 50_000)
        got = 0
        while got < 50_000:
            got += len(s.recv(1 << 16))
        s.sendall(b"z" * 10)
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((host, 7001))
        tw = socket.create_connection((host, 7000))
        tw_peer, _ = ls.accept()
        tw.close()
        time.sleep(0.02)
        tw_peer.close()
        keep += [ls, c, s, u]
    time.sleep(0.05)
    with SockDiag() as diag:
        return {
            (fam, proto.value): diag.dump_raw(fam, proto)
            for fam in (4, 6)
            for proto in (Proto.TCP, Proto.UDP)
        }


def test_the_fast_decoder_agrees_with_pyroute2_field_by_field(netns):
    dumps = run_in_netns(netns, _traffic_and_raw_dumps)
    states_seen = set()
    for (family, proto), chunks in dumps.items():
        ours = decode_dump(chunks, Proto(proto))
        ref = decode_dump_with_pyroute2(chunks)
        assert len(ours) == len(ref) > 0
        for o, r in zip(ours, ref):
            states_seen.add(o.state)
            assert o.family == family
            assert (o.local, o.local_port) == (r["idiag_src"], r["idiag_sport"])
            assert (o.remote, o.remote_port) == (r["idiag_dst"], r["idiag_dport"])
            assert (
                int(o.state),
                o.timer.value,
                o.rqueue,
                o.wqueue,
                o.inode,
                o.uid,
                o.cookie,
                o.timer_expires_ms,
            ) == (
                r["idiag_state"],
                r["idiag_timer"],
                r["idiag_rqueue"],
                r["idiag_wqueue"],
                r["idiag_inode"],
                r["idiag_uid"],
                r["idiag_cookie"],
                r["idiag_expires"],
            )
            if "INET_DIAG_INFO" in r:
                for ours_name, ref_name in _TCPI_FIELDS.items():
                    assert getattr(o.tcp, ours_name) == r["INET_DIAG_INFO"][ref_name], ours_name
                for f in TCP_INFO.fields:  # every field of the table, through its conversion
                    ref_value = r["INET_DIAG_INFO"][_pyroute2_name(f.name)]
                    expect = f.convert(ref_value) if f.convert else ref_value
                    assert getattr(o.tcp, f.name) == expect, f.name
            else:
                assert o.tcp is None
            if "INET_DIAG_SKMEMINFO" in r:
                raw = bytes.fromhex(r["INET_DIAG_SKMEMINFO"].replace(":", ""))
                mem = struct.unpack("=9I", raw[:36])
                assert (
                    o.memory.rmem_alloc,
                    o.memory.rcvbuf,
                    o.memory.wmem_alloc,
                    o.memory.sndbuf,
                    o.memory.wmem_queued,
                    o.memory.drops,
                ) == (mem[0], mem[1], mem[2], mem[3], mem[5], mem[8])
                signed = struct.unpack("=IIIIiIIII", raw[:36])
                assert (o.memory.fwd_alloc, o.memory.optmem, o.memory.backlog) == signed[4:5] + signed[6:8]
            if "INET_DIAG_CONG" in r:
                assert o.congestion == r["INET_DIAG_CONG"]
    assert {TcpState.LISTEN, TcpState.ESTABLISHED, TcpState.TIME_WAIT, TcpState.CLOSE} <= states_seen


def _one_tcp_message(chunks: list[bytes]) -> bytes:
    data = chunks[0]
    length = struct.unpack_from("=I", data, 0)[0]
    return bytes(data[:length])


def _truncate_tcp_info(msg: bytes, keep: int) -> bytes:
    """The same message with its INET_DIAG_INFO payload cut to ``keep`` bytes (an older kernel's tcp_info)."""
    out = bytearray(msg[:88])
    a = 88
    while a + 4 <= len(msg):
        alen, atype = struct.unpack_from("=HH", msg, a)
        step = (alen + 3) & ~3
        if atype == 2:
            out += (
                struct.pack("=HH", 4 + keep, 2) + msg[a + 4 : a + 4 + keep] + bytes(((keep + 3) & ~3) - keep)
            )
        else:
            out += msg[a : a + step]
        a += step
    struct.pack_into("=I", out, 0, len(out))
    return bytes(out)


def test_a_shorter_tcp_info_from_an_older_kernel_reads_as_zero_beyond_its_end(netns):
    dumps = run_in_netns(netns, _traffic_and_raw_dumps)
    full = _one_tcp_message(dumps[(4, "tcp")])
    (whole,) = decode_dump([full], Proto.TCP)
    (short,) = decode_dump([_truncate_tcp_info(full, 104)], Proto.TCP)  # up to tcpi_total_retrans
    assert short.tcp.rtt_us == whole.tcp.rtt_us and short.tcp.cwnd == whole.tcp.cwnd
    assert short.tcp.bytes_acked == 0 and short.tcp.min_rtt_us == 0 and short.tcp.busy_time_us == 0
    assert (short.inode, short.local_port, short.memory) == (whole.inode, whole.local_port, whole.memory)


def test_a_message_of_a_known_length_but_another_layout_is_not_misread(netns):
    dumps = run_in_netns(netns, _traffic_and_raw_dumps)
    full = _one_tcp_message(dumps[(4, "tcp")])
    (first,) = decode_dump([full], Proto.TCP)
    # same length, attributes in another order: the cached layout must not apply
    attrs, a = [], 88
    while a + 4 <= len(full):
        alen = struct.unpack_from("=H", full, a)[0]
        step = (alen + 3) & ~3
        attrs.append(full[a : a + step])
        a += step
    reordered = full[:88] + b"".join(reversed(attrs))
    assert len(reordered) == len(full)
    (again,) = decode_dump([reordered], Proto.TCP)
    assert again == first


def test_sock_diag_errors_name_the_cause():
    err = sockdiag._diag_error(2, 4, Proto.UDP)
    assert isinstance(err, EnvironmentProblem) and "modprobe udp_diag" in err.hint
    assert isinstance(sockdiag._diag_error(1, 6, Proto.TCP), EnvironmentProblem)


def test_the_tcp_info_table_agrees_with_pyroute2s_layout():
    # tuner.kernel's table is the one tuner decodes with; pyroute2's is an independent transcription
    offsets, at = {}, 0
    for name, code in sockdiag.inet_diag_msg.tcp_info.fields:
        offsets[name] = (at, code)
        at += struct.calcsize("=" + code)
    for f in TCP_INFO.fields:
        assert offsets[_pyroute2_name(f.name)] == (f.offset, f.code), f.name
    assert TCP_INFO.size <= at


def _two_incremental_dumps() -> tuple:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 7100))
    ls.listen(8)
    idle = socket.create_connection(("127.0.0.1", 7100))
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a timer that counts down between dumps
    _idle_peer, _ = ls.accept()
    busy = socket.create_connection(("127.0.0.1", 7100))
    busy_peer, _ = ls.accept()
    with SockDiag(incremental=True) as diag:
        first = diag.dump()
        time.sleep(0.05)
        busy.sendall(b"q" * 5000)
        busy_peer.recv(10000)
        late = socket.create_connection(("127.0.0.1", 7100))  # waits in the accept queue
        time.sleep(0.05)
        second = diag.dump()
    ports = {"idle": idle.getsockname()[1], "busy": busy.getsockname()[1], "late": late.getsockname()[1]}
    return first, second, ports


def test_an_incremental_dump_keeps_the_records_of_idle_sockets_and_rereads_the_rest(netns):
    first, second, ports = run_in_netns(netns, _two_incremental_dumps)

    # both lists come back in one pickle, which keeps shared objects shared: identity survives
    def find(records, **kw):
        return next(r for r in records if all(getattr(r, k) == v for k, v in kw.items()))

    idle1, idle2 = (find(r, local_port=ports["idle"]) for r in (first, second))
    assert idle2 is idle1  # carried over
    busy1, busy2 = (find(r, local_port=ports["busy"]) for r in (first, second))
    assert (
        busy2 is not busy1
        and busy2.observed_at > busy1.observed_at
        and busy2.tcp.bytes_acked == busy1.tcp.bytes_acked + 5000
    )
    l1, l2 = (find(r, local_port=7100, state=TcpState.LISTEN) for r in (first, second))
    assert (l1.rqueue, l2.rqueue) == (0, 1) and l2.observed_at > l1.observed_at
    assert any(r.local_port == ports["late"] for r in second)


class _FailsOnce:
    """A sock_diag socket whose first receive times out (the kernel's reply stays queued)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.failed = False

    def recv_into(self, buf):
        if not self.failed:
            self.failed = True
            raise TimeoutError("timed out")
        return self._sock.recv_into(buf)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _dump_after_an_interrupted_one() -> tuple[int, int]:
    ls = [socket.socket() for _ in range(3)]
    for i, s in enumerate(ls):
        s.bind(("127.0.0.1", 7100 + i))
        s.listen(1)
    with SockDiag() as diag:
        clean = len(diag.dump([4], [Proto.TCP]))
        diag._sock = _FailsOnce(diag._sock)
        with pytest.raises(TimeoutError):
            diag.dump([4], [Proto.TCP])
        again = len(diag.dump([4], [Proto.TCP]))
    return clean, again


def test_a_dump_after_an_interrupted_one_holds_only_its_own_sockets(netns):
    clean, again = run_in_netns(netns, _dump_after_an_interrupted_one)
    assert clean == 3 and again == 3
