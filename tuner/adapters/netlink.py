"""The one module that imports pyroute2. Its types never leave this file.

Sections are owned by different parts of tuner and edited separately:
``# --- observe: ...`` (sock_diag, for tuner.observe) and ``# --- sandbox: ...`` (links and qdiscs,
for tuner.sandbox).
"""

from __future__ import annotations

# --- observe: sock_diag (TCP/UDP sockets, tcp_info, socket memory) ------------------------------
#
# The request is encoded by pyroute2 (``inet_diag_req``) and the reply layout (``inet_diag_msg``,
# ``tcp_info``) is taken from pyroute2's own field tables. The reply is decoded here with precompiled
# ``struct`` formats: pyroute2's generic decoder (asyncio queue + per-field objects) takes about
# 1 s for 10,000 sockets, this one about 20 ms. ``decode_dump_with_pyroute2`` keeps pyroute2's
# decoder as the reference the tests compare against.
import errno as _errno
import os as _os
import socket as _socket
import struct as _struct
import time as _time
from collections.abc import Iterable as _Iterable
from collections.abc import Sequence as _Sequence
from operator import itemgetter as _itemgetter

from pyroute2.netlink import NLM_F_DUMP as _NLM_F_DUMP
from pyroute2.netlink import NLM_F_REQUEST as _NLM_F_REQUEST
from pyroute2.netlink.diag import (
    SOCK_DIAG_BY_FAMILY as _SOCK_DIAG_BY_FAMILY,
)
from pyroute2.netlink.diag import (
    MarshalDiag as _MarshalDiag,
)
from pyroute2.netlink.diag import (
    inet_diag_msg as _inet_diag_msg,
)
from pyroute2.netlink.diag import (
    inet_diag_req as _inet_diag_req,
)

from tuner.errors import EnvironmentProblem
from tuner.observe.sockets import Proto, SocketMemory, SocketRecord, TcpInfo, TcpState, Timer

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
_AF = {4: _socket.AF_INET, 6: _socket.AF_INET6}
_FAMILY_OF = {_socket.AF_INET: 4, _socket.AF_INET6: 6}
_PROTO_NUM = {Proto.TCP: _socket.IPPROTO_TCP, Proto.UDP: _socket.IPPROTO_UDP}

# attribute types (enum order of pyroute2's inet_diag_msg.nla_map == the kernel's INET_DIAG_*)
_ATTR = {name: i for i, (name, _) in enumerate(_inet_diag_msg.nla_map)}
_INFO = _ATTR["INET_DIAG_INFO"]
_CONG = _ATTR["INET_DIAG_CONG"]
_SKMEMINFO = _ATTR["INET_DIAG_SKMEMINFO"]
# idiag_ext asks for attribute n with bit (n - 1)
_EXT_TCP = (1 << (_INFO - 1)) | (1 << (_CONG - 1)) | (1 << (_SKMEMINFO - 1))
_EXT_UDP = 1 << (_SKMEMINFO - 1)

ALL_STATES = (1 << 12) - 1  # every state up to CLOSING
LISTEN_STATES = 1 << TcpState.LISTEN

_NLMSGHDR = _struct.Struct("=IHHII")
_LEN_TYPE = _struct.Struct("=IH")
_SWAPPED = [((p & 0xFF) << 8) | (p >> 8) for p in range(1 << 16)]  # ports arrive big-endian
_NLATTR = _struct.Struct("=HH")
# inet_diag_msg; ports are big-endian on the wire and swapped below
_MSG_FMT = "BBBBHH16s16sIQIIIII"
_MSG = _struct.Struct("=" + _MSG_FMT)
_MSG_OFF = _NLMSGHDR.size
_ATTRS_OFF = _MSG_OFF + _MSG.size
_MSG_VALUES = 15


def _body_format(fields: _Sequence[tuple[str, str]], wanted: _Sequence[str]) -> tuple[str, int]:
    """A struct format that yields only ``wanted`` fields (in layout order), skipping the rest."""
    parts, found = [], []
    for name, code in fields:
        if name in wanted:
            parts.append(code)
            found.append(name)
        else:
            parts.append(f"{_struct.calcsize('=' + code)}x")
    if found != list(wanted):
        raise RuntimeError(f"pyroute2's tcp_info layout changed: expected {wanted}, found {found}")
    return "".join(parts), _struct.calcsize("=" + "".join(code for _, code in fields))


# tcp_info as pyroute2 lays it out (every field naturally aligned, so the packed and C layouts agree);
# TcpInfo's fields are in the same order, so a decoded slice constructs it positionally
_TCPI_NAMES = {
    "delivery_rate_app_limited": "tcpi_delivery_rate_app_limited",
    "ato_us": "tcpi_ato",
    "snd_mss": "tcpi_snd_mss",
    "rcv_mss": "tcpi_rcv_mss",
    "unacked": "tcpi_unacked",
    "retrans": "tcpi_retrans",
    "last_data_sent_ms": "tcpi_last_data_sent",
    "last_data_recv_ms": "tcpi_last_data_recv",
    "last_ack_recv_ms": "tcpi_last_ack_recv",
    "rtt_us": "tcpi_rtt",
    "rttvar_us": "tcpi_rttvar",
    "cwnd": "tcpi_snd_cwnd",
    "rcv_space": "tcpi_rcv_space",
    "total_retrans": "tcpi_total_retrans",
    "bytes_acked": "tcpi_bytes_acked",
    "bytes_received": "tcpi_bytes_received",
    "segs_out": "tcpi_segs_out",
    "segs_in": "tcpi_segs_in",
    "notsent_bytes": "tcpi_notsent_bytes",
    "min_rtt_us": "tcpi_min_rtt",
    "data_segs_in": "tcpi_data_segs_in",
    "data_segs_out": "tcpi_data_segs_out",
    "delivery_rate": "tcpi_delivery_rate",
    "busy_time_us": "tcpi_busy_time",
    "rwnd_limited_us": "tcpi_rwnd_limited",
    "sndbuf_limited_us": "tcpi_sndbuf_limited",
    "bytes_sent": "tcpi_bytes_sent",
    "bytes_retrans": "tcpi_bytes_retrans",
    "snd_wnd": "tcpi_snd_wnd",
}
_TCPI_FMT, _TCPI_SIZE = _body_format(
    _inet_diag_msg.tcp_info.fields, [_TCPI_NAMES[f] for f in TcpInfo.__slots__]
)
_TCPI = _struct.Struct("=" + _TCPI_FMT)
_TCPI_COUNT = len(TcpInfo.__slots__)
# SK_MEMINFO_*: RMEM_ALLOC RCVBUF WMEM_ALLOC SNDBUF FWD_ALLOC WMEM_QUEUED OPTMEM BACKLOG DROPS;
# SocketMemory takes rmem_alloc rcvbuf wmem_alloc sndbuf wmem_queued drops
_SKMEM_FMT, _SKMEM_SIZE = "4I4xI8xI", 36
_SKMEM_OLD_FMT, _SKMEM_OLD_SIZE = "4I4xI8x", 32  # kernels before 4.? (no DROPS)
# what changes in the message of an idle socket from one dump to the next: idiag_expires (a timer
# counting down) and tcp_info's last_data_sent .. last_ack_recv ("ms ago" values)
_COOKIE = _struct.Struct("=Q")
_COOKIE_OFF = _MSG_OFF + _struct.calcsize("=BBBBHH16s16sI")
_EXPIRES_OFF = _COOKIE_OFF + 8
_EXPIRES_END = _EXPIRES_OFF + 4
_TCPI_OFFSETS = {}
_at = 0
for _name, _code in _inet_diag_msg.tcp_info.fields:
    _TCPI_OFFSETS[_name] = _at
    _at += _struct.calcsize("=" + _code)
_TCPI_VOLATILE = (_TCPI_OFFSETS["tcpi_last_data_sent"], _TCPI_OFFSETS["tcpi_last_ack_recv"] + 4)
del _at, _name, _code
_STATES = {s.value: s for s in TcpState}
_TIMERS = {t.value: t for t in Timer}
_STATE_LIST = [_STATES.get(i, TcpState.CLOSE) for i in range(14)]
_TIMER_LIST = [_TIMERS.get(i, Timer.NONE) for i in range(5)]


class _Layout:
    """One message layout (the sequence of attribute headers), decoded by a single ``unpack_from``.

    A reply's layout is re-checked on every message: ``expected`` must equal the attribute headers
    read at the layout's offsets, so a message of another layout never decodes through this one."""

    __slots__ = ("check", "cong", "expected", "length", "mem", "mem_old", "struct", "tcp", "volatile")

    def __init__(self, data: bytes, off: int, length: int) -> None:
        fmt = ["=16x", _MSG_FMT]
        n = _MSG_VALUES
        heads: list[int] = []
        expected: list[int] = []
        self.tcp = self.mem = self.cong = None
        self.mem_old = False
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
            if atype == _INFO and plen >= _TCPI_SIZE:
                fmt.append(f"{_TCPI_FMT}{plen - _TCPI_SIZE}x")
                rel = a + 4 - off
                self.volatile = (rel + _TCPI_VOLATILE[0], rel + _TCPI_VOLATILE[1])
                self.tcp = (n, n + _TCPI_COUNT)
                n += _TCPI_COUNT
            elif atype == _INFO:
                raise _ShortTcpInfo()
            elif atype == _SKMEMINFO and plen >= _SKMEM_SIZE:
                fmt.append(f"{_SKMEM_FMT}{plen - _SKMEM_SIZE}x")
                self.mem = (n, n + 6)
                n += 6
            elif atype == _SKMEMINFO and plen >= _SKMEM_OLD_SIZE:
                fmt.append(f"{_SKMEM_OLD_FMT}{plen - _SKMEM_OLD_SIZE}x")
                self.mem, self.mem_old = (n, n + 5), True
                n += 5
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
        self.struct = _struct.Struct("".join(fmt))
        self.length = length
        self.check = _itemgetter(*heads) if len(heads) > 1 else None
        self.expected = tuple(expected)


class _ShortTcpInfo(Exception):
    """tcp_info shorter than pyroute2's table (an old kernel): decode that message field by field."""


_LAYOUTS: dict[int, list[_Layout]] = {}  # by message length; layouts are few and stable per kernel
_MAX_LAYOUTS_PER_LENGTH = 8


def _layout_for(data: bytes, off: int, length: int) -> tuple[_Layout, tuple] | None:
    candidates = _LAYOUTS.get(length)
    if candidates:
        for layout in candidates:
            t = layout.struct.unpack_from(data, off)
            if layout.check is None or layout.check(t) == layout.expected:
                return layout, t
    try:
        layout = _Layout(data, off, length)
    except _ShortTcpInfo:
        return None
    bucket = _LAYOUTS.setdefault(length, [])
    if len(bucket) < _MAX_LAYOUTS_PER_LENGTH:
        bucket.append(layout)
    return layout, layout.struct.unpack_from(data, off)


def _request(family: int, proto: Proto, states: int, ext: int, seq: int) -> bytes:
    req = _inet_diag_req()
    req["header"]["type"] = _SOCK_DIAG_BY_FAMILY
    req["header"]["flags"] = _NLM_F_REQUEST | _NLM_F_DUMP
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

    def _open(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, self._rcvbuf)
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
                raise OSError(_errno.EIO, f"sock_diag {proto.value} IPv{family}: short read of {n} bytes")
            # A dump ends with NLMSG_DONE (a 20-byte message) at the tail of its last datagram; an
            # error comes alone. Only those two places are looked at, not every message in between.
            length, mtype, _flags, mseq, _pid = hdr(buf, 0)
            if mseq == seq and mtype in (_NLMSG_ERROR, _NLMSG_DONE) and length >= 20:
                code = -_struct.unpack_from("=i", buf, 16)[0]
                if code > 0:
                    raise _diag_error(code, family, proto)
                if mtype == _NLMSG_DONE:
                    return chunks
            if n >= 36:
                length, mtype, _flags, mseq, _pid = hdr(buf, n - 20)
                if length == 20 and mtype == _NLMSG_DONE and mseq == seq:
                    code = -_struct.unpack_from("=i", buf, n - 4)[0]
                    if code > 0:
                        raise _diag_error(code, family, proto)
                    chunks.append(bytes(view[: n - 20]))
                    return chunks
            chunks.append(bytes(view[:n]))

    def dump(
        self,
        families: _Sequence[int] = (4, 6),
        protos: _Sequence[Proto] = (Proto.TCP, Proto.UDP),
        states: int = ALL_STATES,
        *,
        details: bool = True,
    ) -> list[SocketRecord]:
        """Every matching socket. ``details=False`` skips tcp_info, memory and congestion (cheaper)."""
        out: list[SocketRecord] = []
        now = _time.monotonic()
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
    if code == _errno.ENOENT:
        return EnvironmentProblem(
            f"this kernel cannot list {proto.value} IPv{family} sockets (sock_diag: {_os.strerror(code)})",
            hint=f"load the module: modprobe {proto.value}_diag",
        )
    if code in (_errno.EPERM, _errno.EACCES):
        return EnvironmentProblem(f"sock_diag refused: {_os.strerror(code)}", hint="run as root")
    return OSError(code, f"sock_diag {proto.value} IPv{family}: {_os.strerror(code)}")


def dump_sockets(
    families: _Sequence[int] = (4, 6),
    protos: _Sequence[Proto] = (Proto.TCP, Proto.UDP),
    states: int = ALL_STATES,
    *,
    details: bool = True,
) -> list[SocketRecord]:
    """One-shot :meth:`SockDiag.dump` in the calling process's network namespace."""
    with SockDiag() as diag:
        return diag.dump(families, protos, states, details=details)


def decode_dump(
    chunks: _Iterable[bytes],
    proto: Proto,
    observed_at: float = 0.0,
    previous: dict[int, tuple] | None = None,
    keep: dict[int, tuple] | None = None,
) -> list[SocketRecord]:
    """Decode the SOCK_DIAG_BY_FAMILY messages of a dump (NLMSG_DONE/ERROR are skipped).

    With ``keep``, each socket's message is stored there by cookie; with ``previous`` (the ``keep`` of
    the last dump), a socket whose message is unchanged except for its timers gets its old record."""
    out: list[SocketRecord] = []
    cookie_unpack = _COOKIE.unpack_from
    c_off, e_off, e_end = _COOKIE_OFF, _EXPIRES_OFF, _EXPIRES_END
    append = out.append
    names: dict[int, dict[bytes, str]] = {_socket.AF_INET: {}, _socket.AF_INET6: {}}
    congestions: dict[bytes, str] = {}
    hdr_unpack = _LEN_TYPE.unpack_from
    swap = _SWAPPED
    states, timers = _STATE_LIST, _TIMER_LIST
    af_inet = _socket.AF_INET
    # the fields of the layout in use, kept in locals while consecutive messages share it
    current = None
    unpack = check = expected = None
    cur_len = tcp_lo = tcp_hi = mem_lo = mem_hi = cong = -1
    mem_old = False
    for data in chunks:
        end = len(data)
        off = 0
        while off + 16 <= end:
            length, mtype = hdr_unpack(data, off)
            if length < 16:
                break
            if mtype != _SOCK_DIAG_BY_FAMILY or off + length > end:
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
            if length == cur_len:
                t = unpack(data, off)
                if check is not None and check(t) != expected:
                    t = None
            if t is None:
                hit = _layout_for(data, off, length)
                if hit is None:
                    append(_decode_one_slowly(data, off, length, proto, observed_at))
                    off += (length + 3) & ~3
                    continue
                current, t = hit
                unpack, check, expected = current.struct.unpack_from, current.check, current.expected
                cur_len = current.length
                tcp_lo, tcp_hi = current.tcp or (-1, -1)
                mem_lo, mem_hi = current.mem or (-1, -1)
                mem_old = current.mem_old
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
                tcp.delivery_rate_app_limited = bool(tcp.delivery_rate_app_limited & 1)
            if mem_lo >= 0:
                memory = (
                    SocketMemory(*t[mem_lo:mem_hi]) if not mem_old else SocketMemory(*t[mem_lo:mem_hi], 0)
                )
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
    return _socket.inet_ntop(fam, raw[:4] if fam == _socket.AF_INET else raw)


def _decode_one_slowly(data: bytes, off: int, length: int, proto: Proto, observed_at: float) -> SocketRecord:
    """Attribute by attribute, zero-filling a short tcp_info (an older kernel's)."""
    (fam, state, timer, retrans, sport, dport, src, dst, _ifindex, cookie, expires, rq, wq, uid, inode) = (
        _MSG.unpack_from(data, off + _MSG_OFF)
    )
    tcp = memory = congestion = None
    a, end = off + _ATTRS_OFF, off + length
    while a + 4 <= end:
        alen, atype = _NLATTR.unpack_from(data, a)
        if alen < 4:
            break
        payload = bytes(data[a + 4 : a + alen])
        if atype == _INFO:
            tcp = TcpInfo(*_TCPI.unpack((payload + bytes(_TCPI_SIZE))[:_TCPI_SIZE]))
            tcp.delivery_rate_app_limited = bool(tcp.delivery_rate_app_limited & 1)
        elif atype == _SKMEMINFO and len(payload) >= _SKMEM_OLD_SIZE:
            m = _struct.unpack("=" + _SKMEM_FMT, (payload + bytes(4))[:_SKMEM_SIZE])
            memory = SocketMemory(*m)
        elif atype == _CONG:
            congestion = payload.split(b"\0", 1)[0].decode("ascii", "replace")
        a += (alen + 3) & ~3
    return SocketRecord(
        proto,
        4 if fam == _socket.AF_INET else 6,
        _STATES.get(state, TcpState.CLOSE),
        _address(fam, src),
        _socket.ntohs(sport),
        _address(fam, dst),
        _socket.ntohs(dport),
        rq,
        wq,
        inode,
        uid,
        cookie,
        _TIMERS.get(timer, Timer.NONE),
        expires,
        retrans,
        tcp,
        memory,
        congestion,
        observed_at,
    )


def decode_dump_with_pyroute2(chunks: _Iterable[bytes]) -> list[dict]:
    """pyroute2's own decoding of the same reply, as plain dicts (the reference for tests)."""
    marshal = _MarshalDiag()
    out: list[dict] = []
    for data in chunks:
        for msg in marshal.parse(data):
            if msg["header"]["type"] != _SOCK_DIAG_BY_FAMILY:
                continue
            d = {k: msg[k] for k, _ in _inet_diag_msg.fields}
            for name, value in msg["attrs"]:
                d[name] = dict(value) if hasattr(value, "items") else value
            out.append(d)
    return out


# --- sandbox: namespaces, links, addresses, neighbours, netem (for tuner.sandbox) ---------------
#
# Namespace-local calls act on the network namespace of the *calling process*: the sandbox runs them
# in its children that entered a namespace, never in the parent. Netlink errors come out as OSError
# with the kernel's errno; results are plain values and our dataclasses.

import contextlib as _contextlib
from dataclasses import dataclass as _dataclass

from pyroute2 import IPRoute as _IPRoute
from pyroute2 import netns as _pr_netns
from pyroute2.netlink.exceptions import NetlinkError as _NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT as _NUD_PERMANENT

__all__ += [
    "LinkCounters",
    "NetemSettings",
    "QdiscCounters",
    "add_ipv4",
    "add_netem",
    "add_veth_pair",
    "change_netem",
    "create_netns",
    "delete_link",
    "link_counters",
    "link_index",
    "link_mac",
    "netem_counters",
    "netem_options",
    "netem_supported",
    "qdisc_counters",
    "remove_netns",
    "set_link",
    "set_neighbour",
]


@_dataclass(frozen=True)
class LinkCounters:
    """A device's own counters (IFLA_STATS64)."""

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int


@_dataclass(frozen=True)
class QdiscCounters:
    packets: int
    bytes: int
    drops: int
    backlog: int


@_dataclass(frozen=True)
class NetemSettings:
    """What one netem qdisc gets: a one-way delay, Bernoulli loss, a rate and a packet limit."""

    delay_us: int
    loss_percent: float
    rate_bps: int | None
    limit: int
    jitter_us: int = 0


@_contextlib.contextmanager
def _netlink_errors(action: str):
    try:
        yield
    except _NetlinkError as exc:
        code = int(getattr(exc, "code", 0) or _errno.EIO)
        raise OSError(code, f"{action}: {_os.strerror(code)}") from None


def create_netns(name: str) -> None:
    """Create the named namespace /run/netns/NAME (done in a forked child: the caller stays put)."""
    with _netlink_errors(f"create namespace {name}"):
        _pr_netns.create(name)


def remove_netns(name: str) -> None:
    """Unmount and unlink /run/netns/NAME; the namespace dies with its last process."""
    with _netlink_errors(f"remove namespace {name}"):
        _pr_netns.remove(name)


def link_index(ifname: str) -> int:
    with _IPRoute() as ipr, _netlink_errors(f"look up {ifname}"):
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(_errno.ENODEV, f"no device {ifname}")
    return int(found[0])


def set_link(ifname: str, *, up: bool = True, txqlen: int | None = None, mtu: int | None = None) -> None:
    attrs: dict[str, object] = {"state": "up" if up else "down"}
    if txqlen is not None:
        attrs["txqlen"] = txqlen
    if mtu is not None:
        attrs["mtu"] = mtu
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"set {ifname}"):
        ipr.link("set", index=index, **attrs)


def add_veth_pair(
    local: str,
    peer: str,
    peer_netns: str | None = None,
    *,
    local_mac: str | None = None,
    peer_mac: str | None = None,
) -> None:
    """A veth pair whose ``peer`` end is created directly inside the named namespace ``peer_netns``
    (or next to ``local`` when it is None)."""
    peer_attrs: dict[str, object] = {"ifname": peer}
    if peer_netns is not None:
        peer_attrs["net_ns_fd"] = peer_netns
    local_attrs: dict[str, object] = {}
    if peer_mac:
        peer_attrs["address"] = peer_mac
    if local_mac:
        local_attrs["address"] = local_mac
    with _IPRoute() as ipr, _netlink_errors(f"add veth {local}/{peer}"):
        ipr.link("add", ifname=local, kind="veth", peer=peer_attrs, **local_attrs)


def delete_link(ifname: str) -> None:
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"delete {ifname}"):
        ipr.link("del", index=index)


def add_ipv4(ifname: str, address: str, prefixlen: int) -> None:
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"add {address}/{prefixlen} to {ifname}"):
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)


def link_mac(ifname: str) -> str:
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"read {ifname}"):
        msg = ipr.get_links(index)[0]
    return str(msg.get_attr("IFLA_ADDRESS"))


def set_neighbour(ifname: str, address: str, mac: str) -> None:
    """A permanent neighbour entry: ``address`` is reached at ``mac`` (no ARP)."""
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"set neighbour {address} on {ifname}"):
        ipr.neigh("replace", dst=address, lladdr=mac, ifindex=index, state=_NUD_PERMANENT)


def link_counters(ifname: str) -> LinkCounters:
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"read counters of {ifname}"):
        msg = ipr.get_links(index)[0]
    stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
    return LinkCounters(
        *(
            int(stats[k])
            for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")
        )
    )


def _netem_kwargs(settings: NetemSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "delay": settings.delay_us,
        "loss": settings.loss_percent,
        "limit": settings.limit,
    }
    if settings.jitter_us:
        kwargs["jitter"] = settings.jitter_us
    if settings.rate_bps:
        kwargs["rate"] = f"{int(settings.rate_bps)}bit"
    return kwargs


def add_netem(ifname: str, settings: NetemSettings) -> None:
    """netem as the root qdisc of ``ifname`` (egress). ENOENT means the kernel has no sch_netem."""
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"add netem to {ifname}"):
        ipr.tc("add", "netem", index, 0x10000, **_netem_kwargs(settings))


def change_netem(ifname: str, settings: NetemSettings) -> None:
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"change netem on {ifname}"):
        ipr.tc("change", "netem", index, 0x10000, **_netem_kwargs(settings))


def qdisc_counters(ifname: str, kind: str) -> QdiscCounters:
    """Counters of the ``kind`` qdisc on ``ifname`` (packets and bytes sent, drops, backlog)."""
    index = link_index(ifname)
    with _IPRoute() as ipr, _netlink_errors(f"read qdisc of {ifname}"):
        for msg in ipr.get_qdiscs(index=index):
            if msg.get_attr("TCA_KIND") != kind:
                continue
            stats2 = msg.get_attr("TCA_STATS2")
            b = stats2.get_attr("TCA_STATS_BASIC") if stats2 else None
            q = stats2.get_attr("TCA_STATS_QUEUE") if stats2 else None
            if b is None or q is None:
                st = msg.get_attr("TCA_STATS")
                return QdiscCounters(
                    int(st["packets"]), int(st["bytes"]), int(st["drops"]), int(st["backlog"])
                )
            return QdiscCounters(int(b["packets"]), int(b["bytes"]), int(q["drops"]), int(q["backlog"]))
    raise OSError(_errno.ENOENT, f"no {kind} qdisc on {ifname}")


def netem_counters(ifname: str) -> QdiscCounters:
    return qdisc_counters(ifname, "netem")


def netem_options(settings: NetemSettings) -> dict[str, int]:
    """The netem options as pyroute2 encodes them for the kernel (delay in ticks, loss and rate
    scaled), without sending anything: lets tests check the translation on kernels without netem."""
    from pyroute2.netlink.rtnl.tcmsg.sched_netem import get_parameters as _netem_parameters

    opts = _netem_parameters(_netem_kwargs(settings))
    out = {k: int(opts[k]) for k in ("delay", "limit", "loss", "jitter")}
    for name, value in opts.get("attrs", []):
        if name == "TCA_NETEM_RATE":
            out["rate_bytes_per_s"] = int(value["rate"])
    return out


def netem_supported(ifname: str) -> bool:
    """Whether this kernel accepts a netem qdisc, tried on ``ifname`` and removed again.

    False when the qdisc kind is unknown (no sch_netem: ENOENT, or EOPNOTSUPP/EINVAL from old kernels);
    any other failure is raised.
    """
    index = link_index(ifname)
    with _IPRoute() as ipr:
        try:
            ipr.tc("add", "netem", index, 0x10000, delay=1000, limit=1000)
        except _NetlinkError as exc:
            if exc.code in (_errno.ENOENT, _errno.EOPNOTSUPP, _errno.EINVAL):
                return False
            raise OSError(exc.code, f"try netem on {ifname}: {_os.strerror(exc.code)}") from None
        with _netlink_errors(f"remove netem from {ifname}"):
            ipr.tc("del", "netem", index, 0x10000)
    return True
