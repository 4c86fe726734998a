"""The one error root of tuner and its subclasses.

Every error carries the data a user needs to act (the knob, the value, the file, the key, the line)
and a ``hint`` saying how to fix it. Exit codes are *not* decided here: the CLI maps classes to codes.
"""

from __future__ import annotations

from pathlib import Path


class TunerError(Exception):
    """Root of every error tuner raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Errors cross process boundaries (namespace children, sandbox helpers): keep every field.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[TunerError], args: tuple, state: dict) -> TunerError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


# --- bad input (the user can fix it by changing what they passed) -------------------------------


class InputError(TunerError):
    """Bad input: a flag, a value, a file."""


class KnobError(InputError):
    """A value that a knob does not accept, or a knob that does not exist."""

    def __init__(self, knob: str, message: str, *, value: object = None, hint: str | None = None) -> None:
        super().__init__(f"{knob}: {message}", hint=hint)
        self.knob = knob
        self.value = value


class ProfileError(InputError):
    """A profile file that cannot be used; names the file, the key and (where known) the line."""

    def __init__(
        self,
        file: Path | str,
        message: str,
        *,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(file)
        if line is not None:
            where += f":{line}"
        if key:
            where += f": [{key}]"
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = str(file)
        self.key = key
        self.line = line


class ConfigError(InputError):
    """A daemon configuration file that cannot be used."""

    def __init__(
        self, file: Path | str, message: str, *, key: str | None = None, hint: str | None = None
    ) -> None:
        where = f"{file}: [{key}]" if key else str(file)
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = str(file)
        self.key = key


class UnsafeFileError(InputError):
    """A file tuner refuses to trust (writable by others, not owned by root)."""

    def __init__(self, file: Path | str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{file}: {message}", hint=hint)
        self.file = str(file)


# --- the environment (the machine cannot do what was asked) ------------------------------------


class EnvironmentProblem(TunerError):
    """The machine lacks something: root, a kernel feature, a tool."""


class NotRootError(EnvironmentProblem):
    def __init__(self, action: str) -> None:
        super().__init__(
            f"{action} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            hint="run it with sudo, or as root",
        )
        self.action = action


class NetnsNotFoundError(EnvironmentProblem):
    def __init__(self, netns: str) -> None:
        super().__init__(
            f"network namespace {netns!r} does not exist",
            hint="list them with `ip netns list`",
        )
        self.netns = netns


class SandboxError(EnvironmentProblem):
    """A sandbox (namespaces, link, delay line) could not be created or used."""


# --- operations that failed ---------------------------------------------------------------------


class ApplyError(TunerError):
    """Writing a setting failed; whatever was written before has been restored."""

    def __init__(
        self, knob: str, value: str, reason: str, *, restored: bool = True, hint: str | None = None
    ) -> None:
        tail = (
            "; the values already written were restored"
            if restored
            else "; RESTORE FAILED, run `tuner rollback`"
        )
        super().__init__(f"could not set {knob} = {value}: {reason}{tail}", hint=hint)
        self.knob = knob
        self.value = value
        self.reason = reason
        self.restored = restored


class StateError(TunerError):
    """The state directory holds something tuner cannot use (a corrupt journal, a locked file)."""

    def __init__(self, file: Path | str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{file}: {message}", hint=hint)
        self.file = str(file)


class ProbeError(TunerError):
    """A probe could not run at all (as opposed to a measurement that came back invalid)."""


class SearchError(TunerError):
    """A search could not start or continue."""


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | SystemExit | None:
    """The interrupt (Ctrl-C, or SIGTERM turned into ``SystemExit``) that ``error`` was raised while handling,
    if any: a cleanup that fails because the interrupt also hit a child must not hide the interrupt."""
    seen: set[int] = set()
    node: BaseException | None = error
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, (KeyboardInterrupt, SystemExit)):
            return node
        node = node.__cause__ or node.__context__
    return None


def reraise_interrupt(error: BaseException) -> None:
    """Raise a fresh copy of the interrupt behind ``error`` (chained to it, so the cleanup failure stays
    visible in the traceback and the log); return if there is none."""
    interrupt = interrupt_behind(error)
    if isinstance(interrupt, SystemExit):
        raise SystemExit(interrupt.code) from error
    if interrupt is not None:
        raise KeyboardInterrupt() from error
