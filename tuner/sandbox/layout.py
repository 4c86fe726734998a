"""The addressing plan of a sandbox: sides, names, addresses.

Every sandbox uses the same addresses: its namespaces are private, so they never meet. The link is
on 198.18.0.0/30, inside 198.18.0.0/15 (RFC 2544, reserved for benchmarking): traffic only ever goes
between the two namespaces of one sandbox.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ADDRESSES", "DEAD_MAC", "IFNAME", "MACS", "PREFIXLEN", "Side", "peer_of"]


class Side(Enum):
    CLIENT = "client"
    SERVER = "server"


IFNAME = "tnr0"
PREFIXLEN = 30
ADDRESSES = {Side.CLIENT: "198.18.0.1", Side.SERVER: "198.18.0.2"}
MACS = {Side.CLIENT: "02:74:6e:72:00:01", Side.SERVER: "02:74:6e:72:00:02"}  # locally administered
DEAD_MAC = "02:74:6e:72:00:ff"  # owned by nobody: frames sent there are dropped by the receiver


def peer_of(side: Side) -> Side:
    return Side.SERVER if side is Side.CLIENT else Side.CLIENT
