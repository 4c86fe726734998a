"""The rtnetlink adapter on its own, inside a namespace the test creates: namespaces, links, addresses,
neighbours and qdisc counters (the sandbox tests cover it through whole sandboxes)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time

import pytest

from tuner.adapters import rtnl
from tuner.netns import NETNS_DIR, run_in_netns

pytestmark = pytest.mark.root

_PEER_MAC = "02:00:00:00:00:02"


def _veth_with_traffic() -> dict[str, object]:
    rtnl.add_veth_pair("tnra0", "tnra1", local_mac="02:00:00:00:00:01", peer_mac=_PEER_MAC)
    rtnl.set_link("tnra0", txqlen=500, mtu=1400)
    rtnl.set_link("tnra1")
    rtnl.add_ipv4("tnra0", "198.18.7.1", 24)
    rtnl.set_neighbour("tnra0", "198.18.7.2", _PEER_MAC)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(5):
            s.sendto(b"q" * 100, ("198.18.7.2", 9))
    time.sleep(0.05)
    sent = rtnl.link_counters("tnra0").tx_packets
    mac = rtnl.link_mac("tnra1")
    index = rtnl.link_index("tnra0")
    with pytest.raises(OSError) as no_qdisc:
        rtnl.qdisc_counters("tnra0", "no-such-qdisc")
    rtnl.delete_link("tnra0")  # takes its peer with it
    with pytest.raises(OSError) as no_peer:
        rtnl.link_index("tnra1")
    return {
        "mac": mac,
        "sent": sent,
        "index": index,
        "errors": (no_qdisc.value.errno, no_peer.value.errno),
    }


def test_links_addresses_and_neighbours_in_a_namespace(netns):
    got = run_in_netns(netns, _veth_with_traffic)
    assert got["mac"] == _PEER_MAC and got["index"] > 1
    assert got["sent"] >= 5  # the permanent neighbour entry let them out without ARP
    assert got["errors"] == (errno.ENOENT, errno.ENODEV)


def test_a_named_namespace_is_created_and_removed():
    name = f"tuner-rtnl-{os.getpid()}"
    rtnl.create_netns(name)
    try:
        assert (NETNS_DIR / name).exists()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name in listed
    finally:
        rtnl.remove_netns(name)
    assert not (NETNS_DIR / name).exists()


def test_netlink_errors_come_out_as_os_errors_with_the_kernels_errno(netns):
    with pytest.raises(OSError) as info:
        run_in_netns(netns, rtnl.link_index, "tnr-absent")
    assert info.value.errno == errno.ENODEV
