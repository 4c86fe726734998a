"""Rendering a profile for the people who deploy it.

* :func:`render_sysctl_d`: the kernel settings as a ``sysctl.d`` file (``key = value`` lines).
* :func:`render_socket_snippets`: the socket settings, which only the application can set, as Python
  ``setsockopt`` lines and nginx ``listen`` parameters. tuner never applies these itself.

Pure functions of the profile: the same profile always renders to the same text.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from tuner.knobs import Assignment, as_int, get_knob
from tuner.profiles.model import Profile
from tuner.units import format_value

__all__ = ["render_nginx_listen", "render_python_setsockopt", "render_socket_snippets", "render_sysctl_d"]

_PY_NOTES = {
    "SO_RCVBUF": "before listen()/connect(): the window scale is fixed at the handshake; "
    "the kernel doubles it and turns autotuning off",
    "SO_SNDBUF": "before connect()/listen(); the kernel doubles it and turns autotuning off",
    "TCP_QUICKACK": "not sticky: set it again after each recv()",
    "TCP_CONGESTION": "the algorithm must be loaded (see net.ipv4.tcp_available_congestion_control)",
}


def render_sysctl_d(profile: Profile, *, netns: str | None = None) -> str:
    """The profile's sysctls as the text of a ``/etc/sysctl.d/*.conf`` file; with ``netns``, only the
    per-namespace ones, as a file for that namespace's own boot step (never the host's sysctl.d)."""
    origin = f"tuner {profile.tuner_version}" if profile.tuner_version else "hand-written profile"
    settings = profile.sysctl if netns is None else profile.sysctl.netns_sysctls
    lines = [f"# Written by {origin} from profile {profile.name} (created {profile.created.isoformat()})."]
    if netns is None:
        lines.append(
            f"# Install as /etc/sysctl.d/90-tuner-{profile.name}.conf; it is read at boot and by "
            "`sysctl --system`."
        )
    else:
        lines.append(
            f"# For network namespace {netns} only (host-wide knobs left out): apply it when the "
            f"namespace is created, e.g. `ip netns exec {netns} sysctl -p FILE`; never put it in "
            "/etc/sysctl.d."
        )
    if not settings:
        lines.append(
            "# This profile sets no kernel settings."
            if netns is None
            else "# This profile sets no per-namespace kernel settings."
        )
    for name in settings.in_catalogue_order():
        knob = get_knob(name)
        lines.append(f"{name} = {knob.domain.to_kernel(settings[name]).replace(chr(9), ' ')}")
    return "\n".join(lines) + "\n"


def _level_and_name(name: str) -> tuple[str, str]:
    level, _ = get_knob(name).sockopt or (0, 0)
    level_name = "socket.SOL_SOCKET" if level == socket.SOL_SOCKET else "socket.IPPROTO_TCP"
    return level_name, f"socket.{name}"


def render_python_setsockopt(settings: Mapping[str, object]) -> str:
    """Python lines that give a socket ``settings`` (``sock`` / ``listener`` stand for the application's)."""
    socket_settings = Assignment(settings)
    lines = ["import socket", "", "# on each socket, before connect() or listen():"]
    backlog = None
    for name in socket_settings.in_catalogue_order():
        value = socket_settings[name]
        if not get_knob(name).is_socket_option:
            backlog = value
            continue
        level, opt = _level_and_name(name)
        arg = repr(value.encode()) if isinstance(value, str) else str(as_int(value))
        note = f"  # {_PY_NOTES[name]}" if name in _PY_NOTES else ""
        lines.append(f"sock.setsockopt({level}, {opt}, {arg}){note}")
    if backlog is not None:
        lines += [
            "",
            "# on the listening socket:",
            f"listener.listen({backlog})  # capped at net.core.somaxconn",
        ]
    return "\n".join(lines) + "\n"


def render_nginx_listen(settings: Mapping[str, object], *, port: int = 80) -> str:
    """nginx directives: the ``listen`` parameters, plus ``tcp_nodelay``; other options as comments."""
    settings = Assignment(settings)
    params = []
    if "backlog" in settings:
        params.append(f"backlog={settings['backlog']}")
    if "SO_RCVBUF" in settings:
        params.append(f"rcvbuf={settings['SO_RCVBUF']}")
    if "SO_SNDBUF" in settings:
        params.append(f"sndbuf={settings['SO_SNDBUF']}")
    keep = [settings.get(k) for k in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")]
    if settings.get("SO_KEEPALIVE") is False:
        params.append("so_keepalive=off")
    elif any(v is not None for v in keep):
        params.append("so_keepalive=" + ":".join("" if v is None else str(v) for v in keep))
    elif settings.get("SO_KEEPALIVE") is True:
        params.append("so_keepalive=on")
    lines = [f"listen {' '.join([str(port), *params])};"]
    if "TCP_NODELAY" in settings:
        lines.append(f"tcp_nodelay {'on' if settings['TCP_NODELAY'] else 'off'};")
    covered = {
        "backlog",
        "SO_RCVBUF",
        "SO_SNDBUF",
        "SO_KEEPALIVE",
        "TCP_KEEPIDLE",
        "TCP_KEEPINTVL",
        "TCP_KEEPCNT",
        "TCP_NODELAY",
    }
    rest = [n for n in settings.in_catalogue_order() if n not in covered]
    if rest:
        lines.append(
            "# no nginx directive for: "
            + ", ".join(f"{n}={format_value(settings[n])}" for n in rest)
            + " (set them in the application or with a sysctl)"
        )
    return "\n".join(lines) + "\n"


def render_socket_snippets(profile: Profile) -> str:
    """The profile's socket settings as a block an application owner can act on."""
    if not profile.socket:
        return f"# Profile {profile.name} has no socket settings.\n"
    return (
        f"# Socket settings of profile {profile.name}. The application sets these on its own sockets;\n"
        "# tuner does not apply them.\n\n"
        "# --- Python ---\n"
        + render_python_setsockopt(profile.socket)
        + "\n# --- nginx (server block) ---\n"
        + render_nginx_listen(profile.socket)
    )
