"""`tuner daemon`: continuous observation, searches in a low-priority child, guarded apply, systemd glue.

    from tuner.daemon import Daemon, load_config
    Daemon(config_path=None, netns=None).run()     # blocks until SIGTERM; Type=notify aware

Modules: config (tuner.toml), watch (what changed, what to search: pure), guard (what to apply and
whether it regressed: pure), admin (sysctl.d and manual changes), state (the persistent state),
notify (sd_notify), runner/searcher (the search child), priority, access (reads and writes through
tuner.apply), sample (observations), loop (the service loop).
"""

from tuner.daemon.config import DEFAULT_CONFIG_PATH, DaemonConfig, Mode, OnStop, load_config, parse_config
from tuner.daemon.loop import Daemon, daemon_running
from tuner.daemon.notify import Notifier
from tuner.daemon.state import DaemonState, load_state, save_state

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Daemon",
    "DaemonConfig",
    "DaemonState",
    "Mode",
    "Notifier",
    "OnStop",
    "daemon_running",
    "load_config",
    "load_state",
    "parse_config",
    "save_state",
]
