"""time.* host builtins (``policies/runtime/host/clock.py``).

Unit tests call the registered functions and check them against Python's own
calendar (``datetime``, ``zoneinfo``); the differential tests compile policies
that read their arguments from the input and compare every answer, undefined and
error with regorus. Zones are compared from 1970 on: before that the system's tz
database and regorus's built-in copy disagree on some links (EST, Amsterdam).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.runtime.host import clock as host_clock
from policies.runtime.values import UNDEFINED
from tests.host_diff import Pair, call, mutate, refused

NS = 1_000_000_000
I64_MAX = 2**63 - 1


def ns_of(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


# ---------------------------------------------------------------- parsing


def test_rfc3339_is_exact_nanoseconds() -> None:
    assert call("time.parse_rfc3339_ns", "2026-01-01T00:00:00Z") == 1_767_225_600 * NS
    assert call("time.parse_rfc3339_ns", "2026-01-01T00:00:00.000000001Z") == (
        1_767_225_600 * NS + 1
    )
    assert call("time.parse_rfc3339_ns", "1985-04-12T23:20:50.52+02:00") == ns_of(
        datetime(1985, 4, 12, 21, 20, 50, 520000, tzinfo=UTC)
    )
    # chrono's leniency, kept: t, space and z; digits past nanoseconds dropped; a leap second
    assert call("time.parse_rfc3339_ns", "2020-01-01t00:00:00z") == 1_577_836_800 * NS
    assert call("time.parse_rfc3339_ns", "2020-01-01 00:00:00.1234567891Z") == (
        1_577_836_800 * NS + 123_456_789
    )
    assert call("time.parse_rfc3339_ns", "2016-12-31T23:59:60Z") == 1_483_228_800 * NS


@pytest.mark.parametrize(
    "text",
    ["2020-01-01", "2020-01-01T00:00:00", "2020-02-30T00:00:00Z", "2020-01-01T24:00:00Z",
     "2020-01-01T00:00:00+25:00", "2020-01-01T00:00:00+0100", "20-01-01T00:00:00Z",
     "2020-01-01T00:00:00Zjunk", "２０２０-01-01T00:00:00Z"],
)  # fmt: skip
def test_rfc3339_refusals(text: str) -> None:
    assert "time.parse_rfc3339_ns" in refused("time.parse_rfc3339_ns", text)


def test_times_outside_int64_nanoseconds_are_errors() -> None:
    assert call("time.parse_rfc3339_ns", "2262-04-11T23:47:16.854775807Z") == I64_MAX
    assert "outside of valid range" in refused(
        "time.parse_rfc3339_ns", "2262-04-11T23:47:16.854775808Z"
    )
    assert "outside of valid range" in refused("time.parse_rfc3339_ns", "3000-01-01T00:00:00Z")
    assert "outside of valid range" in refused("time.parse_ns", "Jan 2 15:04", "Feb 4 21:30")


REFERENCE = datetime(2010, 2, 4, 21, 0, 57, 12000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("layout", "value", "expected"),
    [
        ("2006-01-02", "2010-02-04", datetime(2010, 2, 4, tzinfo=UTC)),
        ("RFC3339", "2010-02-04T21:00:57-08:00", datetime(2010, 2, 5, 5, 0, 57, tzinfo=UTC)),
        ("RFC3339Nano", "2010-02-04T21:00:57.012Z", REFERENCE),
        ("RFC1123Z", "Thu, 04 Feb 2010 21:00:57 -0800", datetime(2010, 2, 5, 5, 0, 57, tzinfo=UTC)),
        ("RFC1123", "Thu, 04 Feb 2010 21:00:57 PST", datetime(2010, 2, 5, 5, 0, 57, tzinfo=UTC)),
        ("ANSIC", "Thu Feb  4 21:00:57 2010", REFERENCE.replace(microsecond=0)),
        ("ANSIC", "thu FEB 4 21:00:57 2010", REFERENCE.replace(microsecond=0)),
        ("Mon Jan _2 15:04:05.000 2006", "Thu Feb  4 21:00:57.012 2010", REFERENCE),
        ("2006-01-02 15:04:05", "2010-02-04 21:00:57.012", REFERENCE),
        ("01/02/06 3:04PM", "02/04/10 9:00PM", datetime(2010, 2, 4, 21, 0, tzinfo=UTC)),
        ("January 2, 2006", "february 4, 2010", datetime(2010, 2, 4, tzinfo=UTC)),
        ("2006-002", "2010-035", datetime(2010, 2, 4, tzinfo=UTC)),
        ("06-01-02", "69-01-02", datetime(2069, 1, 2, tzinfo=UTC)),  # chrono pivots at 70
        ("06-01-02", "70-01-02", datetime(1970, 1, 2, tzinfo=UTC)),
    ],
)
def test_go_reference_layouts(layout: str, value: str, expected: datetime) -> None:
    assert call("time.parse_ns", layout, value) == ns_of(expected)


@pytest.mark.parametrize(
    ("layout", "value"),
    [
        ("2006-01-02", "2010-02-30"),  # no such day
        ("Monday 2006-01-02", "Friday 2010-02-04"),  # the wrong weekday
        ("2006-01-02 3PM", "2010-02-04 9PM"),  # no minutes: chrono wants them
        ("2006-01-02 15:04:05-07", "2010-02-04 21:00:57-08"),  # -07 wants minutes too
        ("2006-01-02", "x"),
        ("", ""),
        ("bogus", "bogus"),
        ("2006-01-02é", "2010-02-04é"),  # regorus panics on the byte slice: an error
    ],
)
def test_layout_refusals(layout: str, value: str) -> None:
    assert "time.parse_ns" in refused("time.parse_ns", layout, value)


def test_nonsense_layouts_end_where_regorus_ends_them() -> None:
    # an unknown token ("p" of Stamp, "J" not a month) ends the layout; what the value has
    # left is one zone name
    assert call("time.format", [0, "UTC", "Stamp"]) == "Stam"
    assert call("time.format", [0, "UTC", "Jx 2006"]) == ""
    assert call("time.parse_ns", "2006-01-02", "2010-02-04EST") == ns_of(
        datetime(2010, 2, 4, 5, tzinfo=UTC)
    )
    assert "longer than" in refused("time.parse_ns", "2006" * 300, "2010")
    assert "longer than" in refused("time.format", [0, "UTC", "x" * 2000])


def test_durations() -> None:
    assert call("time.parse_duration_ns", "1h2m3.5s") == 3_723_500_000_000
    assert call("time.parse_duration_ns", "-1.5h") == -5_400 * NS
    assert call("time.parse_duration_ns", "12µs") == call("time.parse_duration_ns", "12us")
    assert call("time.parse_duration_ns", "9223372036854775807ns") == I64_MAX
    assert call("time.parse_duration_ns", "-9223372036854775808ns") == -(2**63)
    for bad in ["1d", "", "1", ".h", "9223372036854775808ns", "3000000h", "h", "1h" * 600]:
        assert "time.parse_duration_ns" in refused("time.parse_duration_ns", bad)
    assert "longer than" in refused("time.parse_duration_ns", "9" * 100_000)


# ---------------------------------------------------------------- instants and zones

ZONES = ["America/New_York", "Asia/Kolkata", "Europe/Paris", "Australia/Lord_Howe",
         "Pacific/Chatham", "America/St_Johns", "Asia/Kathmandu"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 4_102_444_799 * NS),
    st.sampled_from(["", "UTC", *ZONES]),
)
def test_calendar_fields_agree_with_python(ns: int, zone: str) -> None:
    dt = datetime.fromtimestamp(ns // NS, ZoneInfo(zone) if zone not in ("", "UTC") else UTC)
    arg = [ns, zone]
    assert call("time.date", arg) == [dt.year, dt.month, dt.day]
    assert call("time.clock", arg) == [dt.hour, dt.minute, dt.second]
    assert call("time.weekday", arg) == dt.strftime("%A")


def test_argument_forms_and_refusals() -> None:
    assert call("time.date", 0) == call("time.date", [0]) == [1970, 1, 1]
    assert call("time.date", 1.0e18) == [2001, 9, 9]
    assert call("time.date", [0, "America/New_York"]) == [1969, 12, 31]
    assert call("time.clock", -1) == [23, 59, 59]
    for bad in [1.5, 2.0**63, "0", True, None, [], [0, 1], [0, "UTC", 5], {"ns": 0}]:
        refused("time.date", bad)
    for zone in ["Nope/Zone", "../../../../etc/passwd", "/etc/localtime", "posixrules", "x" * 500]:
        assert "timezone" in refused("time.date", [0, zone])


def test_format() -> None:
    ns = 1_500_000_000_123_456_789
    assert call("time.format", ns) == "2017-07-14T02:40:00.123456789Z"
    assert call("time.format", 1_500_000_000_120_000_000) == "2017-07-14T02:40:00.120Z"
    assert call("time.format", [ns, "Europe/Paris", "RFC3339Nano"]) == (
        "2017-07-14T04:40:00.123456789+02:00"
    )
    assert call("time.format", [ns, "UTC", "Mon Jan _2 3:04PM 2006 MST"]) == (
        "Fri Jul 14 2:40AM 2017 +00:00"
    )
    assert call("time.format", [0, "UTC", ""]) == ""


def test_add_date_is_chronos_calendar() -> None:
    jan31 = ns_of(datetime(2020, 1, 31, tzinfo=UTC))
    assert call("time.add_date", jan31, 0, 1, 0) == ns_of(datetime(2020, 2, 29, tzinfo=UTC))
    feb29 = ns_of(datetime(2020, 2, 29, 12, tzinfo=UTC))
    assert call("time.add_date", feb29, 1, 0, 0) is UNDEFINED  # no Feb 29 in 2021
    assert call("time.add_date", feb29, 4, 0, -1) == ns_of(datetime(2024, 2, 28, 12, tzinfo=UTC))
    assert call("time.add_date", 0, 0, -12, 365) == ns_of(datetime(1970, 1, 1, tzinfo=UTC))


def test_add_date_overflow() -> None:
    assert "outside of valid range" in refused("time.add_date", 0, 300, 0, 0)
    assert "outside of valid range" in refused("time.add_date", 0, 0, 0, 10_000_000)
    assert call("time.add_date", 0, 300_000, 0, 0) is UNDEFINED  # past chrono's years
    assert call("time.add_date", 0, -(2**31), 0, 0) is UNDEFINED
    assert call("time.add_date", 0, 0, 2**31 - 1, 2**31 - 1) is UNDEFINED
    for bad in [2**31, 1.5, "1"]:
        refused("time.add_date", 0, bad, 0, 0)


def test_diff() -> None:
    a = ns_of(datetime(2020, 3, 31, 10, tzinfo=UTC))
    b = ns_of(datetime(2021, 5, 1, 9, 30, tzinfo=UTC))
    assert call("time.diff", a, b) == call("time.diff", b, a) == [1, 1, 0, 23, 30, 0]
    assert call("time.diff", 0, 999_999_999) == [0] * 6


def test_zone_data_is_present() -> None:
    # without a tz database every zone is refused: the image needs the tzdata package
    assert "Europe/Paris" in host_clock._zone_names()


# ---------------------------------------------------------------- against regorus

DIFF = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair(
        {
            "rfc": "time.parse_rfc3339_ns(input.a)",
            "parse": "time.parse_ns(input.a, input.b)",
            "dur": "time.parse_duration_ns(input.a)",
            "date": "time.date(input.a)",
            "clock": "time.clock(input.a)",
            "weekday": "time.weekday(input.a)",
            "format": "time.format(input.a)",
            "diff": "time.diff(input.a, input.b)",
            "add": "time.add_date(input.a, input.y, input.m, input.d)",
            # exact beyond 2^53 (the harness compares numbers as doubles)
            "rfc_text": "format_int(time.parse_rfc3339_ns(input.a), 10)",
        }
    )


instants = st.integers(0, 4_102_444_799 * NS) | st.integers(-(2**63), 2**63 - 1)
zones = st.sampled_from(["", "UTC", *ZONES])
LAYOUTS = ["RFC3339", "RFC3339Nano", "ANSIC", "UnixDate", "RubyDate", "RFC822", "RFC822Z",
           "RFC850", "RFC1123", "RFC1123Z", "Kitchen", "Stamp", "",
           "2006-01-02 15:04:05.000 MST", "Mon Jan _2 __2 002 3:04:05 PM pm -07 -0700 -07:00",
           "Z07:00 Z0700 -070000 .999 ,999 .000000 05.9 5 06 _2006 January Monday"]  # fmt: skip


def epoch_arg(ns: int, zone: str | None, layout: str | None) -> Any:
    if zone is None:
        return ns
    return [ns, zone] if layout is None else [ns, zone, layout]


@DIFF
@given(
    ns=instants,
    ns2=instants,
    zone=st.none() | zones,
    layout=st.none() | st.sampled_from(LAYOUTS),
)
def test_instant_builtins_agree_with_regorus(
    pair: Pair, ns: int, ns2: int, zone: str | None, layout: str | None
) -> None:
    # pre-1970 instants only in UTC: the tz databases differ there (see the module doc)
    z = zone if ns >= 0 else None
    a = epoch_arg(ns, z, layout if z is not None else None)
    for rule in ("date", "clock", "weekday", "format"):
        pair.check(rule, {"a": a})
    pair.check("diff", {"a": a, "b": ns2 if ns2 >= 0 else 0})


@DIFF
@given(
    ns=st.integers(0, 4_102_444_799 * NS),
    zone=st.none() | zones,
    y=st.integers(-400, 400) | st.sampled_from([2**31 - 1, -(2**31), 300_000]),
    m=st.integers(-30, 30),
    d=st.integers(-800, 800) | st.sampled_from([10**7, -(10**7)]),
)
def test_add_date_agrees_with_regorus(
    pair: Pair, ns: int, zone: str | None, y: int, m: int, d: int
) -> None:
    pair.check("add", {"a": epoch_arg(ns, zone, None), "y": y, "m": m, "d": d})


@DIFF
@given(
    ns=st.integers(-(2**63), 2**63 - 1),
    offset=st.integers(-23 * 60, 23 * 60),
    data=st.data(),
)
def test_rfc3339_agrees_with_regorus(pair: Pair, ns: int, offset: int, data: Any) -> None:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    frac = data.draw(st.sampled_from(["", f".{ns % NS:09}", ".5", ".0001"]))
    text = dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    sign = "-" if offset < 0 else "+"
    zone = data.draw(st.sampled_from(["Z", f"{sign}{abs(offset) // 60:02}:{abs(offset) % 60:02}"]))
    text = mutate(data, text + frac + zone, "0123456789:-+.TtZz ,x\u2212")
    pair.check("rfc", {"a": text})
    pair.check("rfc_text", {"a": text})


GO_FORMS = {
    "2006-01-02T15:04:05Z07:00": "%Y-%m-%dT%H:%M:%S+00:00",
    "Mon Jan _2 15:04:05 2006": "%a %b %d %H:%M:%S %Y",
    "Mon, 02 Jan 2006 15:04:05 -0700": "%a, %d %b %Y %H:%M:%S +0000",
    "02 Jan 06 15:04 MST": "%d %b %y %H:%M GMT",
    "2006-01-02 15:04:05.000": "%Y-%m-%d %H:%M:%S.000",
    "January 2, 2006 3:04PM": "%B %d, %Y %I:%M%p",
    "2006-002": "%Y-%j",
}


@DIFF
@given(
    when=st.datetimes(datetime(1678, 1, 1), datetime(2262, 1, 1)),
    layout=st.sampled_from(sorted(GO_FORMS)),
    data=st.data(),
)
def test_go_layouts_agree_with_regorus(pair: Pair, when: datetime, layout: str, data: Any) -> None:
    value = when.strftime(GO_FORMS[layout])
    if data.draw(st.booleans()):
        value = mutate(data, value, "0123456789 :-.,APMapmJFZ+")
    pair.check("parse", {"a": layout, "b": value})


@DIFF
@given(data=st.data())
def test_durations_agree_with_regorus(pair: Pair, data: Any) -> None:
    base = data.draw(
        st.sampled_from(["1h", "1.5h", "-2m3.4s", "1h2m3s4ms5us6ns", "0", "+0", "-0", "",
                         "9223372036854775807ns", "9223372036854775808ns",
                         "-9223372036854775808ns", "2562047h47m16.854775807s",
                         "0.3333333333333333333h", "12µs", ".5s", "5.s", "1d", "3000000h"])
    )  # fmt: skip
    pair.check("dur", {"a": mutate(data, base, "0123456789.hmsun+-")})
