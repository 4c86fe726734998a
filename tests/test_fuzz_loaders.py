"""Property-based fuzzing of everything that reads outside input: any input gives a clean result or a typed
error (an InputError, exit 2) — never another exception. A fixed, derandomized example budget keeps CI
deterministic and fast; the loaders are pure, so nothing can be written."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.daemon.config import parse_config
from tuner.daemon.state import read_state
from tuner.errors import InputError
from tuner.knobs import CATALOGUE
from tuner.knobs.parse import parse_settings
from tuner.profiles import parse_profile
from tuner.units import parse_duration, parse_rate, parse_ratio, parse_size
from tuner.workload import NetworkPath as NetPath
from tuner.workload import Workload

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Leaves TOML can hold, including the awkward ones: huge integers, infinities, NaN, control characters.
leaves = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([10**400, -(10**400), 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.datetimes(),
    st.dates(),
)
keys = st.one_of(
    st.sampled_from(
        [
            "version",
            "profile",
            "workload",
            "path",
            "sysctl",
            "socket",
            "evidence",
            "name",
            "created",
            "tuner_version",
            "kernel",
            "kind",
            "rtt",
            "rate_bps",
            "loss",
            "connections",
            "think_time",
            "observe",
            "search",
            "guard",
            "apply",
            "interval",
            "budget",
            "repeats",
            "mode",
            "allow",
            *list(CATALOGUE)[:12],
        ]
    ),
    st.text(min_size=1, max_size=12),
)
documents = st.recursive(
    st.dictionaries(keys, leaves, max_size=6),
    lambda inner: st.dictionaries(keys, st.one_of(inner, st.lists(leaves, max_size=4)), max_size=6),
    max_leaves=30,
)


def _clean(fn, *args):
    """Call ``fn``; an InputError is a clean refusal, anything else fails the test."""
    with contextlib.suppress(InputError):
        fn(*args)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_load_as_a_profile_or_a_profile_error(data):
    _clean(parse_profile, data, "fuzz.toml")


@FUZZ
@given(documents)
def test_any_toml_document_loads_as_a_profile_or_a_profile_error(doc):
    text = tomli_w.dumps(doc)
    _clean(parse_profile, text.encode(), "fuzz.toml")
    _clean(parse_profile, ("version = 1\n" + text).encode(), "fuzz.toml")


VALID_HEAD = {
    "version": 1,
    "profile": {
        "name": "fuzz",
        "created": datetime(2026, 1, 1, tzinfo=UTC),
        "tuner_version": "0.1",
        "kernel": "6.1",
    },
}
sections = st.fixed_dictionaries(
    {},
    optional={
        "workload": st.dictionaries(
            st.sampled_from(
                ["kind", "request_size", "connections", "think_time", "udp_rate", "write_pattern", "streams"]
            ),
            leaves,
            max_size=4,
        ).map(lambda d: {"kind": "rr", **d}),
        "path": st.dictionaries(
            st.sampled_from(["rtt", "rate_bps", "loss", "jitter", "queue_packets"]), leaves, max_size=3
        ),
        "sysctl": st.dictionaries(
            st.sampled_from([k for k, v in CATALOGUE.items() if v.kind.value == "sysctl"]),
            st.one_of(leaves, st.lists(leaves, max_size=4)),
            max_size=3,
        ),
        "socket": st.dictionaries(
            st.sampled_from([k for k, v in CATALOGUE.items() if v.kind.value != "sysctl"]), leaves, max_size=3
        ),
        "evidence": documents,
    },
)


@FUZZ
@given(sections)
def test_a_valid_head_with_any_sections_loads_or_gives_a_profile_error(extra):
    _clean(parse_profile, tomli_w.dumps({**VALID_HEAD, **extra}).encode(), "fuzz.toml")


@FUZZ
@given(documents)
def test_any_toml_document_loads_as_a_config_or_a_config_error(doc):
    _clean(parse_config, tomli_w.dumps(doc))


@FUZZ
@given(st.text(max_size=300))
def test_any_text_loads_as_a_config_or_a_config_error(text):
    _clean(parse_config, text)


@FUZZ
@given(st.one_of(st.binary(max_size=300), documents.map(lambda d: json.dumps(d, default=str).encode())))
def test_any_state_file_reads_as_a_state_or_a_value_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("state") / "state.json"
    path.write_bytes(data)
    with contextlib.suppress(ValueError):  # load_state sets such a file aside
        read_state(path)


@FUZZ
@given(st.text(max_size=30))
def test_any_text_is_a_quantity_or_an_input_error(text):
    for parse in (parse_duration, parse_rate, parse_size, parse_ratio):
        _clean(parse, text)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(sorted(CATALOGUE)),
                st.one_of(
                    st.text(max_size=20),
                    st.integers().map(str),
                    st.sampled_from(
                        ["on", "off", "inf", "nan", "1e400", "-1", "64KiB", "4096 131072 6291456", "bbr"]
                    ),
                ),
            ),
        ),
        max_size=4,
    )
)
def test_any_settings_are_an_assignment_or_an_input_error(texts):
    _clean(parse_settings, texts)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["kind", "request_size", "connections", "think_time", "udp_rate", "write_pattern", "bogus"]
        ),
        leaves,
        max_size=5,
    ),
    st.dictionaries(
        st.sampled_from(["rtt", "rate_bps", "loss", "jitter", "queue_packets", "bogus"]), leaves, max_size=4
    ),
)
def test_any_workload_and_path_fields_build_or_give_an_input_error(workload, path):
    _clean(Workload.from_dict, {"kind": "rr", **workload})
    _clean(NetPath.from_dict, path)
