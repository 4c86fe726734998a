"""TUN devices: open one in the calling process's namespace, read a device's counters from outside.

A TUN device opened without ``TUNSETPERSIST`` lives exactly as long as its file descriptor: when the
delay line's processes exit (or are killed) the devices disappear with them, so nothing can leak.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass

__all__ = ["OFFLOADS", "TUN_DEVICE", "DevCounters", "open_tun", "read_dev_counters", "tun_supported"]

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
# what the device lets the kernel hand us: unchecksummed TCP super-packets (not UDP: USO/UFO packets
# would need UDP carving in the line, and the probes' UDP senders do not use UDP_SEGMENT)
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN


def open_tun(ifname: str, *, vnet: bool = False) -> int:
    """Create TUN device ``ifname`` (IFF_TUN | IFF_NO_PI: bare IP packets) and return its fd.

    ``vnet``: every read and write carries a ``virtio_net_hdr`` and the device takes TCP super-packets
    (IFF_VNET_HDR + TUNSETOFFLOAD :data:`OFFLOADS`), see :mod:`tuner.sandbox.gso`; an OSError if the
    kernel refuses. Must run in the namespace the device belongs to: the kernel creates it in the
    caller's namespace.
    """
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", ifname.encode(), flags))
        if vnet:
            fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError:
        os.close(fd)
        raise
    return fd


def tun_supported() -> tuple[bool, str]:
    """Whether this process can create TUN devices, and why not."""
    if not os.path.exists(TUN_DEVICE):
        return False, f"{TUN_DEVICE} is missing"
    try:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"cannot open {TUN_DEVICE}: {exc.strerror}"
    os.close(fd)
    return True, ""


@dataclass(frozen=True)
class DevCounters:
    rx_packets: int
    rx_dropped: int
    tx_packets: int
    tx_dropped: int


def read_dev_counters(pid: int, ifname: str) -> DevCounters | None:
    """Counters of ``ifname`` in the namespace of process ``pid`` (from /proc/PID/net/dev), or None."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == ifname:
            v = [int(x) for x in rest.split()]
            # rx: bytes packets errs drop fifo frame compressed multicast | tx: bytes packets errs drop ...
            return DevCounters(rx_packets=v[1], rx_dropped=v[3], tx_packets=v[9], tx_dropped=v[11])
    return None
