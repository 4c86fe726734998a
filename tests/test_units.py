import pytest

from tuner.errors import InputError
from tuner.units import parse_duration, parse_rate, parse_ratio, parse_size


def test_parse_human_quantities():
    assert parse_duration("50ms") == pytest.approx(0.05)
    assert parse_duration("2") == 2.0
    assert parse_rate("100mbit") == 1e8
    assert parse_size("64KiB") == 65536 and parse_size("1m") == 1 << 20
    assert parse_ratio("0.5%") == pytest.approx(0.005)


@pytest.mark.parametrize(
    "parser,text",
    [(parse_duration, "5 parsecs"), (parse_rate, "fast"), (parse_size, "-1"), (parse_ratio, "150%")],
)
def test_bad_quantities_are_refused_with_the_accepted_forms(parser, text):
    with pytest.raises(InputError) as info:
        parser(text)
    assert info.value.hint or "between" in info.value.message
