"""`tuner daemon`: continuous observation, searches in a low-priority child, guarded apply, systemd glue.

    from tuner.daemon import Daemon, load_config
    Daemon(config_path=None, netns=None).run()     # blocks until SIGTERM; Type=notify aware

Modules: config (tuner.toml), watch (what changed, what to search: pure), regression (whether an
apply regressed: pure), guarded (apply, guard, rollback), admin (sysctl.d and who else writes),
manual (knobs the administrator took over), scheduler (which search runs when), runner/searcher (the
search child), priority, state (the persistent state), control (requests from `tuner daemon
--release/--stage`), notify (sd_notify), status (the one-line status), metrics (Prometheus), access
(reads and writes through tuner.apply), sample (observations), loop (the service loop, signals, lock).
"""

from tuner.daemon.config import DEFAULT_CONFIG_PATH, DaemonConfig, Mode, OnStop, load_config, parse_config
from tuner.daemon.control import daemon_running
from tuner.daemon.loop import Daemon
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
