"""What the kernel reports about sockets, as tuner's own types: the ground floor of tuner.

``structs`` holds the one layout table of ``struct tcp_info`` and of the socket memory array, and their
decoders (for sock_diag replies and for getsockopt alike); ``sockets`` holds the socket records sock_diag
lists. Only the standard library is imported here, and nothing else in tuner.
"""

from __future__ import annotations

from tuner.kernel.sockets import Owner, Proto, SocketRecord, TcpState, Timer
from tuner.kernel.structs import (
    SK_MEMINFO,
    SO_MEMINFO,
    TCP_INFO,
    Field,
    SocketMemory,
    StructLayout,
    TcpInfo,
    sock_meminfo,
    tcp_info,
)

__all__ = [
    "SK_MEMINFO",
    "SO_MEMINFO",
    "TCP_INFO",
    "Field",
    "Owner",
    "Proto",
    "SocketMemory",
    "SocketRecord",
    "StructLayout",
    "TcpInfo",
    "TcpState",
    "Timer",
    "sock_meminfo",
    "tcp_info",
]
