"""The one layout table of tcp_info and socket memory: packed structs, short structs, and real sockets
read both ways (getsockopt and sock_diag)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import pytest

from tuner.kernel import (
    SK_MEMINFO,
    TCP_INFO,
    Field,
    Proto,
    SocketMemory,
    StructLayout,
    TcpInfo,
    TcpState,
    sock_meminfo,
    tcp_info,
)
from tuner.netns import run_in_netns


def _packed(layout: StructLayout, values: dict[str, int], size: int) -> bytes:
    raw = bytearray(size)
    for f in layout.fields:
        if f.name in values and f.end <= size:
            struct.pack_into("=" + f.code, raw, f.offset, values[f.name])
    return bytes(raw)


def _sample_values() -> dict[str, int]:
    # distinct values, each fitting its field
    return {f.name: (i + 1) * (3 if f.code == "B" else 1000) for i, f in enumerate(TCP_INFO.fields)}


def test_a_packed_tcp_info_decodes_to_its_fields():
    values = _sample_values()
    values["delivery_rate_app_limited"] = 0b101  # bit 0 set; the fastopen bits above are not ours
    info = TcpInfo.parse(_packed(TCP_INFO, values, 232))
    for f in TCP_INFO.fields:
        if f.name != "delivery_rate_app_limited":
            assert getattr(info, f.name) == values[f.name], f.name
    assert info.delivery_rate_app_limited is True
    values["delivery_rate_app_limited"] = 0b110
    assert TcpInfo.parse(_packed(TCP_INFO, values, 232)).delivery_rate_app_limited is False


def test_a_longer_tcp_info_of_a_newer_kernel_decodes_the_same():
    values = _sample_values()
    raw = _packed(TCP_INFO, values, 232)
    assert TcpInfo.parse(raw + bytes(48)) == TcpInfo.parse(raw)


def test_a_short_tcp_info_reads_as_zero_beyond_its_end():
    values = _sample_values()
    # 104 bytes: up to tcpi_total_retrans (an old kernel's); 106 cuts into tcpi_pacing_rate
    for size in (104, 106):
        info = TcpInfo.parse(_packed(TCP_INFO, values, 232)[:size])
        assert (info.rtt_us, info.cwnd, info.total_retrans) == (
            values["rtt_us"],
            values["cwnd"],
            values["total_retrans"],
        )
        assert info.bytes_acked == info.min_rtt_us == info.busy_time_us == info.snd_wnd == 0
    assert TcpInfo.parse(b"") == TcpInfo()


def test_socket_memory_decodes_signed_forward_allocation_and_an_old_kernels_short_array():
    raw = struct.pack("=IIIIiIIII", 1, 2, 3, 4, -4096, 6, 7, 8, 9)
    mem = SocketMemory.parse(raw)
    assert mem == SocketMemory(1, 2, 3, 4, -4096, 6, 7, 8, 9)
    assert mem.charged == 1 + 6 - 4096 + 8
    assert SocketMemory.parse(raw[:32]) == SocketMemory(1, 2, 3, 4, -4096, 6, 7, 8, 0)  # no DROPS


def test_format_for_a_length_reads_the_leading_fields_and_skips_the_rest():
    fmt, count = SK_MEMINFO.format_for(40)
    assert struct.calcsize("=" + fmt) == 40 and count == 9
    fmt, count = SK_MEMINFO.format_for(34)  # DROPS cut short: not read
    assert struct.calcsize("=" + fmt) == 34 and count == 8
    fmt, count = TCP_INFO.format_for(TCP_INFO.size)
    assert struct.calcsize("=" + fmt) == TCP_INFO.size == 232 and count == len(TCP_INFO.fields)


def test_the_record_classes_follow_their_tables():
    TCP_INFO.check_record(TcpInfo)
    SK_MEMINFO.check_record(SocketMemory)

    @dataclass
    class Drifted:
        b: int = 0
        a: int = 0

    with pytest.raises(RuntimeError, match="do not follow"):
        StructLayout("two", (Field("a", 0, "I"), Field("b", 4, "I"))).check_record(Drifted)
    with pytest.raises(ValueError, match="overlaps"):
        StructLayout("bad", (Field("a", 0, "Q"), Field("b", 4, "I")))


def test_records_round_trip_through_dicts():
    info = TcpInfo.parse(_packed(TCP_INFO, _sample_values(), 232))
    assert TcpInfo.from_dict(info.to_dict()) == info
    assert SocketMemory.from_dict({"rcvbuf": 5}) == SocketMemory(rcvbuf=5)  # a missing key reads as 0


def _both_ways() -> tuple[TcpInfo, SocketMemory, object]:
    """A loopback connection with some traffic, read with getsockopt and with sock_diag."""
    from tuner.adapters.sockdiag import dump_sockets  # the sock_diag path (pyroute2 behind it)

    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with socket.create_connection(ls.getsockname()) as c:
            peer, _ = ls.accept()
            with peer:
                for _ in range(20):
                    c.sendall(b"x" * 1000)
                    got = 0
                    while got < 1000:
                        got += len(peer.recv(1000 - got))
                info, mem = tcp_info(c), sock_meminfo(c)
                port = c.getsockname()[1]
                (record,) = [r for r in dump_sockets([4], [Proto.TCP]) if r.local_port == port]
                return info, mem, record


@pytest.mark.root
def test_getsockopt_and_sock_diag_decode_the_same_connection_alike(netns):
    info, mem, record = run_in_netns(netns, _both_ways)
    assert record.state is TcpState.ESTABLISHED and info.state == record.tcp.state == TcpState.ESTABLISHED
    # fields that cannot move between the two reads (the peer's last ACK may still arrive in between)
    for name in ("snd_mss", "rcv_mss", "bytes_sent", "bytes_received", "total_retrans", "data_segs_out"):
        assert getattr(info, name) == getattr(record.tcp, name), name
    assert info.bytes_sent == 20_000 and info.bytes_acked <= record.tcp.bytes_acked <= 20_001  # + the SYN
    assert 0 < info.rtt_us < 200_000 and 0 < record.tcp.rtt_us < 200_000
    assert abs(info.rtt_us - record.tcp.rtt_us) <= max(info.rtt_us, record.tcp.rtt_us)
    assert (mem.rcvbuf, mem.sndbuf) == (record.memory.rcvbuf, record.memory.sndbuf)


def test_a_span_covers_fields_from_the_first_to_the_end_of_the_last():
    assert TCP_INFO.span("rtt_us", "total_retrans") == (68, 36)
    assert TCP_INFO.span("snd_wnd", "snd_wnd") == (228, 4) and TCP_INFO.size == 232
    assert SK_MEMINFO.span("rmem_alloc", "drops") == (0, 36)
