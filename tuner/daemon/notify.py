"""systemd's notification protocol (sd_notify) over ``$NOTIFY_SOCKET``, without libsystemd.

A notification is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX socket
named in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside systemd the
variable is unset and every call is a no-op. The watchdog interval comes from ``$WATCHDOG_USEC``
(ignored when ``$WATCHDOG_PID`` names another process); systemd wants ``WATCHDOG=1`` at least that
often, so :attr:`Notifier.watchdog_period` is half of it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from tuner.logs import get_logger

__all__ = ["Notifier"]

log = get_logger(__name__)
_MAX_STATUS = 1000  # systemd shows one line; keep datagrams small


class Notifier:
    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_period = watchdog_usec / 2e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", "0")) or None
            pid = env.get("WATCHDOG_PID")
            if pid and int(pid) != os.getpid():
                usec = None
        except ValueError:
            usec = None
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def send(self, **fields: object) -> bool:
        """Send one notification, e.g. ``send(READY=1, STATUS="watching")``. True if it was delivered."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text[:_MAX_STATUS]}")
        payload = ("\n".join(lines) + "\n").encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._target())
        except OSError as exc:
            if not self._failed:  # say it once, not every watchdog ping
                log.warning("notify.failed", socket=self.address, error=str(exc))
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 match the reload to this notification
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        return self.send(RELOADING=1, MONOTONIC_USEC=usec, STATUS="reloading configuration")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
