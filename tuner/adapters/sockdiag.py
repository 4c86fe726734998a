"""sock_diag through pyroute2: every TCP and UDP socket of a namespace, with tcp_info, socket memory and
congestion control. pyroute2's types never leave this file: callers get tuner.kernel's records.

The request is encoded by pyroute2 (``inet_diag_req``); the reply is decoded here with precompiled
``struct`` formats built from tuner.kernel's layout tables (``TCP_INFO``, ``SK_MEMINFO``): pyroute2's
generic decoder (asyncio queue + per-field objects) takes about 1 s for 10,000 sockets, this one about
20 ms. ``decode_dump_with_pyroute2`` keeps pyroute2's decoder as the reference the tests compare against.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, MarshalDiag, inet_diag_msg, inet_diag_req

from tuner.errors import EnvironmentProblem
from tuner.kernel import SK_MEMINFO, TCP_INFO, Proto, SocketMemory, SocketRecord, TcpInfo, TcpState, Timer

__all__ = [
    "ALL_STATES",
    "LISTEN_STATES",
    "SockDiag",
    "decode_dump",
    "decode_dump_with_pyroute2",
    "dump_sockets",
]

_NETLINK_SOCK_DIAG = 4
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_PROTO_NUM = {Proto.TCP: socket.IPPROTO_TCP, Proto.UDP: socket.IPPROTO_UDP}

# attribute types (enum order of pyroute2's inet_diag_msg.nla_map == the kernel's INET_DIAG_*)
_ATTR = {name: i for i, (name, _) in enumerate(inet_diag_msg.nla_map)}
_INFO = _ATTR["INET_DIAG_INFO"]
_CONG = _ATTR["INET_DIAG_CONG"]
_SKMEMINFO = _ATTR["INET_DIAG_SKMEMINFO"]
# idiag_ext asks for attribute n with bit (n - 1)
_EXT_TCP = (1 << (_INFO - 1)) | (1 << (_CONG - 1)) | (1 << (_SKMEMINFO - 1))
_EXT_UDP = 1 << (_SKMEMINFO - 1)

ALL_STATES = (1 << 12) - 1  # every state up to CLOSING
LISTEN_STATES = 1 << TcpState.LISTEN

_NLMSGHDR = struct.Struct("=IHHII")
_LEN_TYPE = struct.Struct("=IH")
_SWAPPED = [((p & 0xFF) << 8) | (p >> 8) for p in range(1 << 16)]  # ports arrive big-endian
_NLATTR = struct.Struct("=HH")
# inet_diag_msg; ports are big-endian on the wire and swapped below
_MSG_FMT = "BBBBHH16s16sIQIIIII"
_MSG = struct.Struct("=" + _MSG_FMT)
_MSG_OFF = _NLMSGHDR.size
_ATTRS_OFF = _MSG_OFF + _MSG.size
_MSG_VALUES = 15


# what changes in the message of an idle socket from one dump to the next: idiag_expires (a timer
# counting down) and tcp_info's last_data_sent .. last_ack_recv ("ms ago" values)
_COOKIE = struct.Struct("=Q")
_COOKIE_OFF = _MSG_OFF + struct.calcsize("=BBBBHH16s16sI")
_EXPIRES_OFF = _COOKIE_OFF + 8
_EXPIRES_END = _EXPIRES_OFF + 4
_TCPI_VOLATILE = (TCP_INFO.field("last_data_sent_ms").offset, TCP_INFO.field("last_ack_recv_ms").end)
# a memory attribute shorter than this (no BACKLOG entry) is not read
_SKMEM_MIN = SK_MEMINFO.field("backlog").end
_TCPI_CONVERTERS = TCP_INFO.converters
_STATES = {s.value: s for s in TcpState}
_TIMERS = {t.value: t for t in Timer}
_STATE_LIST = [_STATES.get(i, TcpState.CLOSE) for i in range(14)]
_TIMER_LIST = [_TIMERS.get(i, Timer.NONE) for i in range(5)]


class _Layout:
    """One message layout (the sequence of attribute headers), decoded by a single ``unpack_from``.

    A reply's layout is re-checked on every message: ``expected`` must equal the attribute headers
    read at the layout's offsets, so a message of another layout never decodes through this one.
    ``tcp`` and ``mem`` are the slices of the unpacked values that build TcpInfo and SocketMemory
    positionally (a short struct of an older kernel yields fewer: the rest keep their defaults)."""

    __slots__ = ("check", "cong", "expected", "length", "mem", "struct", "tcp", "volatile")

    def __init__(self, data: bytes, off: int, length: int) -> None:
        fmt = ["=16x", _MSG_FMT]
        n = _MSG_VALUES
        heads: list[int] = []
        expected: list[int] = []
        self.tcp: tuple[int, int] | None = None
        self.mem: tuple[int, int] | None = None
        self.cong: int | None = None
        self.volatile = (length, length)  # the tcp_info bytes that change while a socket is idle
        a, end = off + _ATTRS_OFF, off + length
        while a + 4 <= end:
            alen, atype = _NLATTR.unpack_from(data, a)
            if alen < 4 or a + alen > end:
                break
            plen = alen - 4
            heads += (n, n + 1)
            expected += (alen, atype)
            fmt.append("HH")
            n += 2
            if atype == _INFO:
                body, count = TCP_INFO.format_for(plen)
                fmt.append(body)
                rel = a + 4 - off
                self.volatile = (rel + min(_TCPI_VOLATILE[0], plen), rel + min(_TCPI_VOLATILE[1], plen))
                self.tcp = (n, n + count)
                n += count
            elif atype == _SKMEMINFO and plen >= _SKMEM_MIN:
                body, count = SK_MEMINFO.format_for(plen)
                fmt.append(body)
                self.mem = (n, n + count)
                n += count
            elif atype == _CONG:
                fmt.append(f"{plen}s")
                self.cong = n
                n += 1
            else:
                fmt.append(f"{plen}x")
            step = (alen + 3) & ~3
            if a + step <= end:
                fmt.append(f"{step - alen}x")
            a += step
        self.struct = struct.Struct("".join(fmt))
        self.length = length
        self.check: Callable[[tuple[Any, ...]], Any] | None = itemgetter(*heads) if len(heads) > 1 else None
        self.expected = tuple(expected)


_LAYOUTS: dict[int, list[_Layout]] = {}  # by message length; layouts are few and stable per kernel
_MAX_LAYOUTS_PER_LENGTH = 8


def _layout_for(data: bytes, off: int, length: int) -> tuple[_Layout, tuple[Any, ...]]:
    candidates = _LAYOUTS.get(length)
    if candidates:
        for layout in candidates:
            t = layout.struct.unpack_from(data, off)
            if layout.check is None or layout.check(t) == layout.expected:
                return layout, t
    layout = _Layout(data, off, length)
    bucket = _LAYOUTS.setdefault(length, [])
    if len(bucket) < _MAX_LAYOUTS_PER_LENGTH:
        bucket.append(layout)
    return layout, layout.struct.unpack_from(data, off)


def _request(family: int, proto: Proto, states: int, ext: int, seq: int) -> bytes:
    req = inet_diag_req()
    req["header"]["type"] = SOCK_DIAG_BY_FAMILY
    req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    req["header"]["sequence_number"] = seq
    req["header"]["pid"] = 0
    req["sdiag_family"] = _AF[family]
    req["sdiag_protocol"] = _PROTO_NUM[proto]
    req["idiag_ext"] = ext
    req["idiag_states"] = states
    req.encode()
    return bytes(req.data)


class SockDiag:
    """A NETLINK_SOCK_DIAG socket of the calling process's network namespace, reusable across dumps."""

    def __init__(self, rcvbuf: int = 1 << 20, *, incremental: bool = False) -> None:
        """``incremental``: keep each socket's last message, and hand back the *same* record object for a
        socket whose message did not change since the previous full dump but for its timers (an idle
        socket): a long-running observer then decodes only the sockets that moved."""
        self._incremental = incremental
        self._previous: dict[tuple[int, Proto], dict[int, tuple]] = {}
        self._rcvbuf = rcvbuf
        self._sock = self._open()
        self._buf = bytearray(1 << 17)
        self._seq = 0

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
            sock.settimeout(10.0)  # a reply the kernel never finishes must not hang the daemon
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dump_raw(
        self, family: int, proto: Proto, states: int = ALL_STATES, ext: int | None = None
    ) -> list[bytes]:
        """The reply datagrams of one dump request, undecoded."""
        try:
            return self._dump_raw(family, proto, states, ext)
        except BaseException:
            # the rest of this reply may still be queued (a timeout, an interrupt): a fresh socket,
            # so that the next dump of this long-lived object does not read it as its own
            self._sock.close()
            self._sock = self._open()
            raise

    def _dump_raw(self, family: int, proto: Proto, states: int, ext: int | None) -> list[bytes]:
        if ext is None:
            ext = _EXT_TCP if proto is Proto.TCP else _EXT_UDP
        self._seq += 1
        seq = self._seq
        self._sock.send(_request(family, proto, states, ext, seq))
        chunks: list[bytes] = []
        buf = self._buf
        view = memoryview(buf)
        hdr = _NLMSGHDR.unpack_from
        while True:
            n = self._sock.recv_into(buf)
            if n < 16:
                raise OSError(errno.EIO, f"sock_diag {proto.value} IPv{family}: short read of {n} bytes")
            # A dump ends with NLMSG_DONE (a 20-byte message) at the tail of its last datagram; an
            # error comes alone. Only those two places are looked at, not every message in between.
            length, mtype, _flags, mseq, _pid = hdr(buf, 0)
            if mseq == seq and mtype in (_NLMSG_ERROR, _NLMSG_DONE) and length >= 20:
                code = -struct.unpack_from("=i", buf, 16)[0]
                if code > 0:
                    raise _diag_error(code, family, proto)
                if mtype == _NLMSG_DONE:
                    return chunks
            if n >= 36:
                length, mtype, _flags, mseq, _pid = hdr(buf, n - 20)
                if length == 20 and mtype == _NLMSG_DONE and mseq == seq:
                    code = -struct.unpack_from("=i", buf, n - 4)[0]
                    if code > 0:
                        raise _diag_error(code, family, proto)
                    chunks.append(bytes(view[: n - 20]))
                    return chunks
            chunks.append(bytes(view[:n]))

    def dump(
        self,
        families: Sequence[int] = (4, 6),
        protos: Sequence[Proto] = (Proto.TCP, Proto.UDP),
        states: int = ALL_STATES,
        *,
        details: bool = True,
    ) -> list[SocketRecord]:
        """Every matching socket. ``details=False`` skips tcp_info, memory and congestion (cheaper)."""
        out: list[SocketRecord] = []
        now = time.monotonic()
        reuse = self._incremental and details and states == ALL_STATES
        for proto in protos:
            ext = None if details else 0
            for family in families:
                chunks = self.dump_raw(family, proto, states, ext)
                if reuse:
                    keep: dict[int, tuple] = {}
                    out.extend(decode_dump(chunks, proto, now, self._previous.get((family, proto)), keep))
                    self._previous[(family, proto)] = keep
                else:
                    out.extend(decode_dump(chunks, proto, now))
        return out


def _diag_error(code: int, family: int, proto: Proto) -> Exception:
    if code == errno.ENOENT:
        return EnvironmentProblem(
            f"this kernel cannot list {proto.value} IPv{family} sockets (sock_diag: {os.strerror(code)})",
            hint=f"load the module: modprobe {proto.value}_diag",
        )
    if code in (errno.EPERM, errno.EACCES):
        return EnvironmentProblem(f"sock_diag refused: {os.strerror(code)}", hint="run as root")
    return OSError(code, f"sock_diag {proto.value} IPv{family}: {os.strerror(code)}")


def dump_sockets(
    families: Sequence[int] = (4, 6),
    protos: Sequence[Proto] = (Proto.TCP, Proto.UDP),
    states: int = ALL_STATES,
    *,
    details: bool = True,
) -> list[SocketRecord]:
    """One-shot :meth:`SockDiag.dump` in the calling process's network namespace."""
    with SockDiag() as diag:
        return diag.dump(families, protos, states, details=details)


def decode_dump(
    chunks: Iterable[bytes],
    proto: Proto,
    observed_at: float = 0.0,
    previous: dict[int, tuple[Any, ...]] | None = None,
    keep: dict[int, tuple[Any, ...]] | None = None,
) -> list[SocketRecord]:
    """Decode the SOCK_DIAG_BY_FAMILY messages of a dump (NLMSG_DONE/ERROR are skipped).

    With ``keep``, each socket's message is stored there by cookie; with ``previous`` (the ``keep`` of
    the last dump), a socket whose message is unchanged except for its timers gets its old record."""
    out: list[SocketRecord] = []
    cookie_unpack = _COOKIE.unpack_from
    c_off, e_off, e_end = _COOKIE_OFF, _EXPIRES_OFF, _EXPIRES_END
    append = out.append
    names: dict[int, dict[bytes, str]] = {socket.AF_INET: {}, socket.AF_INET6: {}}
    congestions: dict[bytes, str] = {}
    hdr_unpack = _LEN_TYPE.unpack_from
    swap = _SWAPPED
    states, timers = _STATE_LIST, _TIMER_LIST
    af_inet = socket.AF_INET
    tcp_converters = _TCPI_CONVERTERS
    # the fields of the layout in use, kept in locals while consecutive messages share it
    current: _Layout | None = None
    unpack: Callable[[bytes, int], tuple[Any, ...]] | None = None
    check: Callable[[tuple[Any, ...]], Any] | None = None
    expected: tuple[int, ...] = ()
    cur_len = tcp_lo = tcp_hi = mem_lo = mem_hi = cong = -1
    for data in chunks:
        end = len(data)
        off = 0
        while off + 16 <= end:
            length, mtype = hdr_unpack(data, off)
            if length < 16:
                break
            if mtype != SOCK_DIAG_BY_FAMILY or off + length > end:
                off += (length + 3) & ~3
                continue
            if previous is not None:
                prev = previous.get(cookie_unpack(data, off + c_off)[0])
                if prev is not None:
                    raw, record, v1, v2 = prev
                    if (
                        len(raw) == length
                        and raw[16:e_off] == data[off + 16 : off + e_off]
                        and raw[e_end:v1] == data[off + e_end : off + v1]
                        and raw[v2:] == data[off + v2 : off + length]
                    ):
                        append(record)
                        keep[record.cookie] = prev  # type: ignore[index]
                        off += (length + 3) & ~3
                        continue
            t = None
            if length == cur_len and unpack is not None:
                t = unpack(data, off)
                if check is not None and check(t) != expected:
                    t = None
            if t is None or current is None:
                current, t = _layout_for(data, off, length)
                unpack, check, expected = current.struct.unpack_from, current.check, current.expected
                cur_len = current.length
                tcp_lo, tcp_hi = current.tcp or (-1, -1)
                mem_lo, mem_hi = current.mem or (-1, -1)
                cong = -1 if current.cong is None else current.cong
            (
                fam,
                state,
                timer,
                retrans,
                sport,
                dport,
                src,
                dst,
                _ifindex,
                cookie,
                expires,
                rq,
                wq,
                uid,
                inode,
            ) = t[:_MSG_VALUES]
            by_addr = names[fam]
            local = by_addr.get(src)
            if local is None:
                local = by_addr[src] = _address(fam, src)
            remote = by_addr.get(dst)
            if remote is None:
                remote = by_addr[dst] = _address(fam, dst)
            tcp = memory = congestion = None
            if tcp_lo >= 0:
                tcp = TcpInfo(*t[tcp_lo:tcp_hi])
                for name, convert in tcp_converters:
                    setattr(tcp, name, convert(getattr(tcp, name)))
            if mem_lo >= 0:
                memory = SocketMemory(*t[mem_lo:mem_hi])
            if cong >= 0:
                raw = t[cong]
                congestion = congestions.get(raw)
                if congestion is None:
                    congestion = congestions[raw] = raw.split(b"\0", 1)[0].decode("ascii", "replace")
            record = SocketRecord(
                proto,
                4 if fam == af_inet else 6,
                states[state] if state < 14 else TcpState.CLOSE,
                local,
                swap[sport],
                remote,
                swap[dport],
                rq,
                wq,
                inode,
                uid,
                cookie,
                timers[timer] if timer < 5 else Timer.NONE,
                expires,
                retrans,
                tcp,
                memory,
                congestion,
                observed_at,
            )
            append(record)
            if keep is not None:
                keep[cookie] = (data[off : off + length], record, *current.volatile)
            off += (length + 3) & ~3
    return out


def _address(fam: int, raw: bytes) -> str:
    return socket.inet_ntop(fam, raw[:4] if fam == socket.AF_INET else raw)


def decode_dump_with_pyroute2(chunks: Iterable[bytes]) -> list[dict]:
    """pyroute2's own decoding of the same reply, as plain dicts (the reference for tests)."""
    marshal = MarshalDiag()
    out: list[dict] = []
    for data in chunks:
        for msg in marshal.parse(data):
            if msg["header"]["type"] != SOCK_DIAG_BY_FAMILY:
                continue
            d = {k: msg[k] for k, _ in inet_diag_msg.fields}
            for name, value in msg["attrs"]:
                d[name] = dict(value) if hasattr(value, "items") else value
            out.append(d)
    return out
