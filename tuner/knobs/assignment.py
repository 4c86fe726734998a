"""The Assignment: knob name -> canonical value, validated once where it enters.

An :class:`Assignment` is built at the edge (a ``--set`` on the command line, a profile, a search point)
from raw values: every name must be a catalogue knob and every value must pass that knob's domain, so
everything downstream reads canonical values (``int``, ``bool``, ``str``, ``tuple[int, ...]``) and
never checks them again. It is an immutable, hashable ``Mapping``, so code that only reads a dict keeps
working, and it knows its own parts: the sysctls per namespace or host-wide, the socket settings, the
two profile sections, and how it reads as text.

    a = Assignment({"TCP_NODELAY": "on"})            # KnobError: not a flag
    a = Assignment({"TCP_NODELAY": 1, "net.ipv4.tcp_rmem": [4096, 131072, 6291456]})
    a.netns_sysctls                                  # Assignment({'net.ipv4.tcp_rmem': (4096, ...)})
    a.text()                                         # 'TCP_NODELAY=on, net.ipv4.tcp_rmem=4096 131072 6291456'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from tuner.errors import KnobError
from tuner.knobs.catalogue import CATALOGUE, Knob, Scope, get_knob
from tuner.knobs.constraints import KernelFacts, violations
from tuner.knobs.domains import Value, as_int
from tuner.units import format_value

__all__ = ["Assignment", "check_assignment", "json_value"]

_ORDER = {name: i for i, name in enumerate(CATALOGUE)}


def json_value(value: Value | None) -> Any:
    """A value as JSON/TOML data: a tuple becomes a list; everything else is already plain."""
    return list(value) if isinstance(value, tuple) else value


class Assignment(Mapping[str, Value]):
    """Knob name -> canonical value; see the module documentation.

    ``Assignment(values)`` validates names and values (raising the first :class:`KnobError`);
    :meth:`checked` also checks the coupled constraints and what the kernel offers.
    """

    __slots__ = ("_values",)
    _values: dict[str, Value]

    def __init__(self, values: Mapping[str, object] | Iterable[tuple[str, object]] = (), /) -> None:
        if isinstance(values, Assignment):
            canonical = values._values
        else:
            pairs = values.items() if isinstance(values, Mapping) else values
            canonical = {name: get_knob(name).validate(value) for name, value in pairs}
        object.__setattr__(self, "_values", canonical)

    @classmethod
    def checked(
        cls, values: Mapping[str, object] | Iterable[tuple[str, object]], facts: KernelFacts | None = None
    ) -> Assignment:
        """``Assignment(values)`` that also satisfies the coupled constraints (and ``facts``, if given)."""
        return cls(values).check(facts)

    @classmethod
    def _trusted(cls, values: dict[str, Value]) -> Assignment:
        """An Assignment of values already canonical (a part of another Assignment): no second check."""
        new = cls.__new__(cls)
        object.__setattr__(new, "_values", values)
        return new

    # --- an immutable, hashable mapping ------------------------------------------------------------

    def __getitem__(self, name: str) -> Value:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._values == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Assignment({self._values!r})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"an Assignment is immutable (cannot set {name})")

    def __reduce__(self) -> tuple[type[Assignment], tuple[dict[str, Value]]]:
        return (Assignment, (self._values,))

    def __or__(self, other: Mapping[str, object]) -> Assignment:
        """This assignment with ``other``'s values on top (``other`` validated unless an Assignment)."""
        return Assignment._trusted({**self._values, **Assignment(other)._values})

    # --- checks --------------------------------------------------------------------------------

    def violations(self, facts: KernelFacts | None = None) -> list[KnobError]:
        """Every coupled-constraint and kernel-support problem (see :mod:`tuner.knobs.constraints`)."""
        return violations(self._values, facts)

    def check(self, facts: KernelFacts | None = None) -> Assignment:
        """This assignment, if it breaks no coupled constraint; else the first problem is raised."""
        problems = self.violations(facts)
        if problems:
            raise problems[0]
        return self

    def require_netns(self) -> Assignment:
        """This assignment, if every knob is a per-namespace sysctl (what a sandbox namespace can set)."""
        for knob, value in self.knobs():
            if not knob.per_netns:
                hint = (
                    "host-wide sysctls are never written by a sandbox: emulate them per socket "
                    "(SO_RCVBUFFORCE/SO_SNDBUFFORCE)"
                    if knob.scope is Scope.HOST
                    else "socket options are set by the application on its sockets"
                )
                raise KnobError(
                    knob.name,
                    f"is a {knob.scope.value} {knob.kind.value} setting, not a per-namespace "
                    "sysctl a sandbox can set",
                    value=value,
                    hint=hint,
                )
        return self

    # --- its parts -----------------------------------------------------------------------------

    def knobs(self) -> Iterator[tuple[Knob, Value]]:
        """(catalogue knob, value) pairs, in the assignment's order."""
        return ((CATALOGUE[name], value) for name, value in self._values.items())

    def where(self, keep: Callable[[Knob], bool]) -> Assignment:
        """The part whose knobs satisfy ``keep`` (e.g. ``lambda k: k.is_socket_option``)."""
        return Assignment._trusted({k.name: v for k, v in self.knobs() if keep(k)})

    @property
    def sysctls(self) -> Assignment:
        """Every kernel setting: the ``[sysctl]`` section of a profile."""
        return self.where(lambda k: k.is_sysctl)

    @property
    def netns_sysctls(self) -> Assignment:
        """The sysctls each network namespace has its own copy of (safe to write in a sandbox)."""
        return self.where(lambda k: k.per_netns)

    @property
    def host_sysctls(self) -> Assignment:
        """The host-wide sysctls (absent or read-only inside a namespace)."""
        return self.where(lambda k: k.host_only)

    @property
    def socket_settings(self) -> Assignment:
        """What the application sets on its sockets (options and the backlog): the ``[socket]`` section."""
        return self.where(lambda k: k.set_by_application)

    @property
    def socket_options(self) -> Assignment:
        """The ``setsockopt`` options only (no backlog)."""
        return self.where(lambda k: k.is_socket_option)

    def sections(self) -> tuple[Assignment, Assignment]:
        """The ``[sysctl]`` and ``[socket]`` sections of a profile holding this assignment."""
        return self.sysctls, self.socket_settings

    def int_value(self, name: str, default: int) -> int:
        """The number of an integer knob (``default`` where the assignment leaves it out)."""
        return as_int(self._values[name]) if name in self._values else default

    def in_catalogue_order(self) -> list[str]:
        """The knob names in catalogue order (how profiles and renderings list them)."""
        return sorted(self._values, key=_ORDER.__getitem__)

    # --- as text and data ----------------------------------------------------------------------

    def text(self, sep: str = ", ") -> str:
        """``KNOB=VALUE`` pairs as people type them (``TCP_NODELAY=on``, ``tcp_rmem=4096 131072 6291456``)."""
        return sep.join(f"{name}={format_value(value)}" for name, value in self._values.items())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON/TOML data: tuples as lists."""
        return {name: json_value(value) for name, value in self._values.items()}


def check_assignment(assignment: Mapping[str, object], facts: KernelFacts | None = None) -> dict[str, Value]:
    """Validate every value against its knob and the coupled constraints; return canonical values.

    Raises the first :class:`KnobError` found. A thin wrapper kept for callers that want a plain dict:
    new code builds ``Assignment.checked(values, facts)``.
    """
    return dict(Assignment.checked(assignment, facts))
