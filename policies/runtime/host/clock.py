"""The ``time.*`` builtins except ``time.now_ns`` (the runtime's, fixed per evaluation).

regorus is the oracle, and regorus reads Go's layouts through chrono: a layout is
turned into chrono items (``_items``, the same walk regorus makes, quirks kept: an
unknown token such as ``Stamp``'s ``p`` ends the layout, ``,000`` wants a dot,
``-07`` wants minutes, two-digit years pivot at 70) and a value is matched
against them as chrono does (``_Parser``). OPA itself answers with Go's ``time``
package; where the two differ (Go clamps nothing in ``time.add_date``, reads
``PST`` in a UTC process as offset 0, prints ``RFC3339Nano`` without trailing
zeros) A1 answers as regorus, the engine its tests run beside.

Timestamps are nanoseconds in a signed 64-bit integer, as in OPA: a result
outside it is an error ("time outside of valid range"), an argument outside it
too. Results are exact Python ints, which the runtime holds exactly over int64.
Time zones come from ``zoneinfo`` (the system's
tz database, or the ``tzdata`` wheel where the image has none).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, type_name, want
from policies.runtime.values import UNDEFINED

__all__ = ["MAX_LAYOUT", "MAX_VALUE", "RUST_WHITESPACE"]

MAX_LAYOUT = 1024
"""Longest layout or time string read: a layout is walked token by token, and no real
layout is longer than a line."""
MAX_VALUE = 1024

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_NS = 1_000_000_000
_DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# chrono's NaiveDate range: the years a date may have before chrono gives up (undefined).
_YEAR_MIN, _YEAR_MAX = -262_144, 262_143
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_ZONE_TABLE_END = 4_102_444_799  # 2099-12-31T23:59:59Z

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Rust's char::is_whitespace (Unicode White_Space), which regorus and chrono use.
RUST_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _lstrip(s: str) -> str:
    i = 0
    while i < len(s) and s[i] in RUST_WHITESPACE:
        i += 1
    return s[i:]


# ---------------------------------------------------------------- calendar arithmetic


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any year (Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if _leap(y) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _in_range(fn: str, ns: int) -> int:
    """An instant as int64 nanoseconds, or regorus's (strict mode) error."""
    if not _I64_MIN <= ns <= _I64_MAX:
        raise BuiltinError(f"{fn}: time outside of valid range")
    return ns


# ---------------------------------------------------------------- instants and zones


@dataclass(frozen=True)
class _Local:
    """An instant at the fixed UTC offset its zone has then (chrono's DateTime<FixedOffset>)."""

    ns: int  # since the epoch, UTC
    offset: int  # seconds east of UTC
    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    nano: int

    @property
    def weekday(self) -> int:  # Monday = 0
        return (_days_from_civil(self.year, self.month, self.day) + 3) % 7

    @property
    def ordinal(self) -> int:
        return (
            _days_from_civil(self.year, self.month, self.day)
            - _days_from_civil(self.year, 1, 1)
            + 1
        )


def _local(ns: int, zone: tzinfo | None) -> _Local:
    offset = 0
    if zone is not None:
        # chrono-tz's tables end with 2099: later instants keep the offset then in force.
        at = _EPOCH + timedelta(seconds=min(ns // _NS, _ZONE_TABLE_END))
        delta = at.astimezone(zone).utcoffset()
        offset = int(delta.total_seconds()) if delta is not None else 0
    return _local_fixed(ns, offset)


@functools.cache
def _zone_names() -> frozenset[str]:
    # The IANA names; not the files that merely sit beside them in the tz directory.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules", "Factory"}


def _zone(fn: str, name: str) -> tzinfo | None:
    """The zone called ``name`` ("" and "UTC": UTC, None here; "Local": the host's)."""
    if name in ("", "UTC"):
        return None
    if name == "Local":
        return datetime.now().astimezone().tzinfo
    if len(name) > 64 or name not in _zone_names():
        if not _zone_names():
            raise BuiltinError(f"{fn}: no time zone database (install the tzdata package or wheel)")
        raise BuiltinError(f"{fn}: failed to parse timezone {name[:64]!r}")
    return zoneinfo.ZoneInfo(name)


def _int64(fn: str, v: Any, what: str = "ns") -> int:
    if type(v) is int:
        if _I64_MIN <= v <= _I64_MAX:
            return v
    elif type(v) is float and v.is_integer() and _I64_MIN <= v < 2.0**63:
        return int(v)
    raise BuiltinError(f"{fn}: could not convert numeric value of `{what}` to int64")


def _epoch(fn: str, v: Any) -> tuple[_Local, str | None]:
    """``ns``, ``[ns]``, ``[ns, zone]`` or ``[ns, zone, layout]``: the instant and the layout."""
    if type(v) is int or type(v) is float:
        return _local(_int64(fn, v), None), None
    if type(v) is list and v and type(v[0]) in (int, float):
        if len(v) == 1:
            return _local(_int64(fn, v[0]), None), None
        if type(v[1]) is str:
            ns = _int64(fn, v[0])
            local = _local(ns, _zone(fn, v[1]))
            if len(v) == 2:
                return local, None
            if type(v[2]) is not str:
                raise BuiltinError(
                    f"{fn}: expects 3rd element of `ns` to be a `string`; got {type_name(v[2])}"
                )
            return local, v[2]
    raise BuiltinError(
        f"{fn}: expects `ns` to be a `number` or `array[number, string]`; got {type_name(v)}"
    )


# ---------------------------------------------------------------- Go layouts as chrono items

# Items: ("lit", text) | ("space", text) | ("num", field, pad) | ("fix", name)
_Item = tuple[str, ...]

_PREDEFINED = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
}

# (prefix, items) per leading character, tried in order; no match ends the layout.
_TOKENS: dict[str, list[tuple[str, list[_Item]]]] = {
    "J": [("January", [("fix", "LongMonthName")]), ("Jan", [("fix", "ShortMonthName")])],
    "M": [
        ("Monday", [("fix", "LongWeekdayName")]),
        ("Mon", [("fix", "ShortWeekdayName")]),
        ("MST", [("fix", "TimezoneName")]),
    ],
    "0": [
        ("002", [("num", "Ordinal", "zero")]),
        ("01", [("num", "Month", "zero")]),
        ("02", [("num", "Day", "zero")]),
        ("03", [("num", "Hour12", "zero")]),
        ("04", [("num", "Minute", "zero")]),
        ("05", []),  # seconds: see _items
        ("06", [("num", "YearMod100", "zero")]),
    ],
    "1": [("15", [("num", "Hour", "zero")]), ("1", [("num", "Month", "none")])],
    "2": [("2006", [("num", "Year", "zero")]), ("2", [("num", "Day", "none")])],
    "_": [
        ("_2006", [("lit", "_"), ("num", "Year", "none")]),
        ("__2", [("num", "Ordinal", "space")]),
        ("_2", [("num", "Day", "space")]),
    ],
    "3": [("3", [("num", "Hour12", "none")])],
    "4": [("4", [("num", "Minute", "none")])],
    "5": [("5", [("num", "Second", "none"), ("fix", "Nanosecond")])],
    "P": [("PM", [("fix", "UpperAmPm")])],
    "p": [("pm", [("fix", "LowerAmPm")])],
    "-": [
        ("-070000", [("fix", "OffsetDoubleColon")]),
        ("-07:00:00", [("fix", "OffsetDoubleColon")]),
        ("-0700", [("fix", "Offset")]),
        ("-07:00", [("fix", "OffsetColon")]),
        ("-07", [("fix", "OffsetTripleColon")]),
        ("-", [("lit", "-")]),
    ],
    "Z": [("Z0700", [("fix", "OffsetZ")]), ("Z07:00", [("fix", "OffsetColonZ")])],
}


def _fraction_tokens(sep: str) -> list[tuple[str, str]]:
    """regorus's fractional-second tokens for ``sep``, longest first: all of them chrono's
    auto-width ``Nanosecond`` except the 3, 6 and 9 zero forms (and, after a comma, the
    3, 6 and 9 nine forms), which are fixed widths."""
    fixed = {9: "Nanosecond9", 6: "Nanosecond6", 3: "Nanosecond3"}
    out = [(sep + "0" * n, fixed.get(n, "Nanosecond")) for n in range(9, 0, -1)]
    nines = fixed if sep == "," else {}
    out += [(sep + "9" * n, nines.get(n, "Nanosecond")) for n in range(9, 0, -1)]
    return [*out, (sep, "")]


_FRACTIONS = _fraction_tokens(".") + _fraction_tokens(",")


def _fractional(rest: str) -> bool:
    if len(rest) < 2 or rest[1] not in "09":
        return False
    rep = rest[1]
    for c in rest[2:]:
        if c != rep:
            return not c.isascii() or not c.isdigit()
    return True


def _items(layout: str, parse: bool) -> list[_Item]:
    """The chrono items regorus makes of a Go layout (parse or format mode)."""
    layout = _PREDEFINED.get(layout, layout)
    out: list[_Item] = []
    s = layout
    while s:
        c = s[0]
        if c in ".," and _fractional(s):
            for prefix, fix in _FRACTIONS:
                if prefix[0] == c and s.startswith(prefix):
                    out.append(("fix", fix) if fix else ("lit", prefix))
                    s = s[len(prefix) :]
                    break
            continue
        if c in _TOKENS:
            for prefix, items in _TOKENS[c]:
                if s.startswith(prefix):
                    s = s[len(prefix) :]
                    if prefix == "05":
                        items = [("num", "Second", "zero")]
                        if parse and not s.startswith("."):
                            items.append(("fix", "Nanosecond"))
                    out.extend(items)
                    break
            else:
                return out  # an unknown token ends the layout, as in regorus
            continue
        if c in RUST_WHITESPACE:
            n = len(s) - len(_lstrip(s))
            out.append(("space", s[:n]))
            s = s[n:]
            continue
        if not c.isascii():
            # regorus slices one byte off a multi-byte character here and panics.
            raise BuiltinError(f"layout: non-ASCII character {c!r} is not supported")
        out.append(("lit", c))
        s = s[1:]
    return out


# ---------------------------------------------------------------- formatting


def _offset_text(offset: int, colon: bool, seconds: bool = False, hours_only: bool = False) -> str:
    """An offset as chrono writes it: hours truncated, minutes rounded (a local mean time
    of -03:30:52 is "-03:31"), or every second."""
    sign = "-" if offset < 0 else "+"
    off = abs(offset)
    sep = ":" if colon else ""
    if hours_only:
        return f"{sign}{off // 3600:02}"
    if seconds:
        return f"{sign}{off // 3600:02}{sep}{off // 60 % 60:02}{sep}{off % 60:02}"
    minutes = (off + 30) // 60
    return f"{sign}{minutes // 60:02}{sep}{minutes % 60:02}"


def _auto_fraction(nano: int) -> str:
    if nano == 0:
        return ""
    if nano % 1_000_000 == 0:
        return f".{nano // 1_000_000:03}"
    if nano % 1000 == 0:
        return f".{nano // 1000:06}"
    return f".{nano:09}"


def _fixed_offset_name(offset: int) -> str:
    """A fixed offset's name, chrono's Display of it: what "MST" prints (regorus keeps no
    zone abbreviations)."""
    return _offset_text(offset, True, seconds=offset % 60 != 0)


def _format_item(item: _Item, t: _Local) -> str:
    kind = item[0]
    if kind in ("lit", "space"):
        return item[1]
    if kind == "num":
        field, pad = item[1], item[2]
        value, width = {
            "Year": (t.year, 4),
            "YearMod100": (t.year % 100, 2),
            "Month": (t.month, 2),
            "Day": (t.day, 2),
            "Ordinal": (t.ordinal, 3),
            "Hour": (t.hour, 2),
            "Hour12": (t.hour % 12 or 12, 2),
            "Minute": (t.minute, 2),
            "Second": (t.second, 2),
        }[field]
        if pad == "zero":
            return f"{value:0{width}}"
        if pad == "space":
            return f"{value:>{width}}"
        return str(value)
    name = item[1]
    if name == "LongMonthName":
        return _MONTHS[t.month - 1]
    if name == "ShortMonthName":
        return _MONTHS[t.month - 1][:3]
    if name == "LongWeekdayName":
        return _WEEKDAYS[t.weekday]
    if name == "ShortWeekdayName":
        return _WEEKDAYS[t.weekday][:3]
    if name == "UpperAmPm":
        return "PM" if t.hour >= 12 else "AM"
    if name == "LowerAmPm":
        return "pm" if t.hour >= 12 else "am"
    if name == "TimezoneName":
        return _fixed_offset_name(t.offset)
    if name == "Nanosecond":
        return _auto_fraction(t.nano)
    if name.startswith("Nanosecond"):
        digits = int(name[len("Nanosecond") :])
        return "." + f"{t.nano:09}"[:digits]
    if name == "Offset":
        return _offset_text(t.offset, False)
    if name == "OffsetColon":
        return _offset_text(t.offset, True)
    if name == "OffsetDoubleColon":
        return _offset_text(t.offset, True, seconds=True)
    if name == "OffsetTripleColon":
        return _offset_text(t.offset, True, hours_only=True)
    if name == "OffsetZ":
        return "Z" if t.offset == 0 else _offset_text(t.offset, False)
    if name == "OffsetColonZ":
        return "Z" if t.offset == 0 else _offset_text(t.offset, True)
    raise AssertionError(name)


def _rfc3339(t: _Local) -> str:
    zone = "Z" if t.offset == 0 else _offset_text(t.offset, True)
    return (
        f"{t.year:04}-{t.month:02}-{t.day:02}T{t.hour:02}:{t.minute:02}:{t.second:02}"
        f"{_auto_fraction(t.nano)}{zone}"
    )


# ---------------------------------------------------------------- parsing (chrono's rules)

_OUT_OF_RANGE = "input is out of range"
_IMPOSSIBLE = "no possible date and time matching input"
_NOT_ENOUGH = "input is not enough for unique date and time"
_INVALID = "input contains invalid characters"
_TOO_SHORT = "premature end of input"
_TOO_LONG = "trailing input"

# Legacy zone abbreviations regorus reads before chrono's TimezoneName item.
_LEGACY = {
    "gmt": 0, "ut": 0, "edt": -4, "est": -5, "cdt": -5, "cst": -6,
    "mdt": -6, "mst": -7, "pdt": -7, "pst": -8,
}  # fmt: skip

_NUM_WIDTH = {
    "Year": 4, "YearMod100": 2, "Month": 2, "Day": 2, "Ordinal": 3,
    "Hour": 2, "Hour12": 2, "Minute": 2, "Second": 2,
}  # fmt: skip


class _Fail(Exception):
    pass


class _Parsed:
    """chrono's ``Parsed``: each field set at most once (a second, different value is
    impossible), then resolved to an instant."""

    def __init__(self) -> None:
        self.f: dict[str, int] = {}

    def set(self, name: str, value: int, lo: int, hi: int) -> None:
        if not lo <= value <= hi:
            raise _Fail(_OUT_OF_RANGE)
        if self.f.setdefault(name, value) != value:
            raise _Fail(_IMPOSSIBLE)

    def set_num(self, field: str, v: int) -> None:
        if field == "Year":
            self.set("year", v, _I32_MIN, _I32_MAX)
        elif field == "YearMod100":
            self.set("year_mod_100", v, 0, 99)
        elif field == "Month":
            self.set("month", v, 1, 12)
        elif field == "Day":
            self.set("day", v, 1, 31)
        elif field == "Ordinal":
            self.set("ordinal", v, 1, 366)
        elif field == "Hour":
            self.set("hour", v, 0, 23)
            self.set("hour_div_12", v // 12, 0, 1)
            self.set("hour_mod_12", v % 12, 0, 11)
        elif field == "Hour12":
            self.set("hour12", v, 1, 12)
            self.set("hour_mod_12", v % 12, 0, 11)
        elif field == "Minute":
            self.set("minute", v, 0, 59)
        elif field == "Second":
            self.set("second", v, 0, 60)
        else:
            raise AssertionError(field)

    def resolve(self) -> int:
        f = self.f
        if "year" in f:
            year = f["year"]
            if "year_mod_100" in f and year % 100 != f["year_mod_100"]:
                raise _Fail(_IMPOSSIBLE)
        elif "year_mod_100" in f:
            m = f["year_mod_100"]
            year = (2000 if m < 70 else 1900) + m
        else:
            year = 0
        if not _YEAR_MIN <= year <= _YEAR_MAX:
            raise _Fail(_OUT_OF_RANGE)
        if "month" in f and "day" in f:
            month, day = f["month"], f["day"]
            if day > _month_days(year, month):
                raise _Fail(_OUT_OF_RANGE)
            days = _days_from_civil(year, month, day)
            if "ordinal" in f and days - _days_from_civil(year, 1, 1) + 1 != f["ordinal"]:
                raise _Fail(_IMPOSSIBLE)
        elif "ordinal" in f:
            if f["ordinal"] > (366 if _leap(year) else 365):
                raise _Fail(_OUT_OF_RANGE)
            days = _days_from_civil(year, 1, 1) + f["ordinal"] - 1
            if "month" in f or "day" in f:
                _, m, d = _civil_from_days(days)
                if f.get("month", m) != m or f.get("day", d) != d:
                    raise _Fail(_IMPOSSIBLE)
        else:
            raise _Fail(_NOT_ENOUGH)
        if "weekday" in f and (days + 3) % 7 != f["weekday"]:
            raise _Fail(_IMPOSSIBLE)
        if not any(k in f for k in ("hour_div_12", "hour_mod_12", "minute", "second")):
            f.update(hour_div_12=0, hour_mod_12=0, minute=0, second=0)
        if "hour_div_12" not in f or "hour_mod_12" not in f or "minute" not in f:
            raise _Fail(_NOT_ENOUGH)
        hour = f["hour_div_12"] * 12 + f["hour_mod_12"]
        second = f.get("second", 0)
        nano = f.get("nanosecond", 0)
        if second == 60:  # a leap second: chrono counts it as the next second
            second, nano = 59, nano + _NS
        local = (days * _DAY_S + hour * 3600 + f["minute"] * 60 + second) * _NS + nano
        offset = f.get("offset", 0)
        if not -_DAY_S < offset < _DAY_S:
            raise _Fail(_OUT_OF_RANGE)
        return local - offset * _NS


def _digits(s: str, lo: int, hi: int) -> tuple[int, str]:
    """chrono's scan::number: ``lo`` to ``hi`` ASCII digits."""
    n = 0
    while n < len(s) and n < hi and "0" <= s[n] <= "9":
        n += 1
    if n < lo:
        raise _Fail(_TOO_SHORT if n == len(s) else _INVALID)
    v = int(s[:n])
    if v > _I64_MAX:
        raise _Fail(_OUT_OF_RANGE)
    return v, s[n:]


def _nanos(s: str) -> tuple[int, str]:
    """chrono's scan::nanosecond: 1-9 digits kept, any more skipped."""
    n = 0
    while n < len(s) and "0" <= s[n] <= "9":
        n += 1
    if n == 0:
        raise _Fail(_TOO_SHORT if not s else _INVALID)
    return int(s[:n][:9].ljust(9, "0")), s[n:]


def _name(s: str, names: list[str], long_ok: bool) -> tuple[int, str]:
    """A month or weekday name, three letters or (``long_ok``) in full, any case."""
    if len(s) < 3:
        raise _Fail(_TOO_SHORT)
    head = s[:3].lower()
    for i, full in enumerate(names):
        if full[:3].lower() == head:
            rest = s[3:]
            tail = full[3:].lower()
            if long_ok and rest[: len(tail)].lower() == tail:
                rest = rest[len(tail) :]
            return i, rest
    raise _Fail(_INVALID)


def _offset(s: str, allow_zulu: bool, colon: str) -> tuple[int, str]:
    """chrono's scan::timezone_offset (minutes required); ``colon``: "any" (colons or
    white space, any number) or "one" (exactly one ':', RFC 3339)."""
    if allow_zulu and s[:1] in ("Z", "z"):
        return 0, s[1:]
    if not s:
        raise _Fail(_TOO_SHORT)
    if s[0] == "+":
        sign = 1
    elif s[0] in ("-", "\u2212"):
        sign = -1
    else:
        raise _Fail(_INVALID)
    s = s[1:]
    if len(s) < 2:
        raise _Fail(_TOO_SHORT)
    if not ("0" <= s[0] <= "9" and "0" <= s[1] <= "9"):
        raise _Fail(_INVALID)
    hours = int(s[:2])
    s = s[2:]
    if colon == "one":
        if not s:
            raise _Fail(_TOO_SHORT)
        if s[0] != ":":
            raise _Fail(_INVALID)
        s = s[1:]
    else:
        i = 0
        while i < len(s) and (s[i] == ":" or s[i] in RUST_WHITESPACE):
            i += 1
        s = s[i:]
    if len(s) < 2:
        raise _Fail(_TOO_SHORT)
    if not ("0" <= s[0] <= "9" and "0" <= s[1] <= "9"):
        raise _Fail(_INVALID)
    minutes = int(s[:2])
    if minutes > 59:
        raise _Fail(_OUT_OF_RANGE)
    return sign * (hours * 3600 + minutes * 60), s[2:]


def _parse_item(item: _Item, s: str, p: _Parsed) -> str:
    kind = item[0]
    if kind == "lit":
        lit = item[1]
        if len(s) < len(lit):
            raise _Fail(_TOO_SHORT)
        if not s.startswith(lit):
            raise _Fail(_INVALID)
        return s[len(lit) :]
    if kind == "space":
        return _lstrip(s)
    if kind == "num":
        field = item[1]
        s = _lstrip(s)
        if field == "Year" and s[:1] in ("+", "-"):
            v, s2 = _digits(s[1:], 1, 10**9)
            p.set_num(field, -v if s[0] == "-" else v)
            return s2
        v, s = _digits(s, 1, _NUM_WIDTH[field])
        p.set_num(field, v)
        return s
    name = item[1]
    if name in ("LongMonthName", "ShortMonthName"):
        i, s = _name(s, _MONTHS, name == "LongMonthName")
        p.set("month", i + 1, 1, 12)
        return s
    if name in ("LongWeekdayName", "ShortWeekdayName"):
        i, s = _name(s, _WEEKDAYS, name == "LongWeekdayName")
        p.set("weekday", i, 0, 6)
        return s
    if name in ("UpperAmPm", "LowerAmPm"):
        if len(s) < 2:
            raise _Fail(_TOO_SHORT)
        ampm = s[:2].lower()
        if ampm not in ("am", "pm"):
            raise _Fail(_INVALID)
        p.set("hour_div_12", int(ampm == "pm"), 0, 1)
        return s[2:]
    if name == "Nanosecond":
        if s.startswith("."):
            v, s = _nanos(s[1:])
            p.set("nanosecond", v, 0, _NS - 1)
        return s
    if name.startswith("Nanosecond"):
        # Optional, as chrono reads it: no dot, nothing read (whatever follows is left to
        # the zone-name item, which swallows it); a dot, exactly ``digits`` digits.
        if not s.startswith("."):
            return s
        digits = int(name[len("Nanosecond") :])
        frac = s[1 : digits + 1]
        if len(frac) < digits:
            raise _Fail(_TOO_SHORT)
        if not all("0" <= c <= "9" for c in frac):
            raise _Fail(_INVALID)
        p.set("nanosecond", int(frac.ljust(9, "0")), 0, _NS - 1)
        return s[digits + 1 :]
    if name == "TimezoneName":
        i = 0
        while i < len(s) and s[i] not in RUST_WHITESPACE:
            i += 1
        return s[i:]
    if name.startswith("Offset"):
        v, s = _offset(_lstrip(s), name.endswith("Z"), "any")
        p.set("offset", v, _I32_MIN, _I32_MAX)
        return s
    raise AssertionError(name)


def _go_parse(layout: str, value: str) -> int:
    """``value`` read with Go ``layout`` as regorus reads it: nanoseconds since the epoch."""
    p = _Parsed()
    s = value
    items = _items(layout, parse=True)
    zone_at = next((i for i, it in enumerate(items) if it == ("fix", "TimezoneName")), len(items))
    for item in items[:zone_at]:
        s = _parse_item(item, s, p)
    if s:
        # regorus reads a legacy zone name here, then the rest as chrono does, the zone
        # name item first (which swallows whatever is not white space).
        letters = 0
        while letters < len(s) and s[letters].isascii() and s[letters].isalpha():
            letters += 1
        hours = _LEGACY.get(s[:letters].lower())
        if letters and hours is not None:
            p.set("offset", hours * 3600, _I32_MIN, _I32_MAX)
        rest = items[zone_at + 1 :] if zone_at < len(items) else []
        for item in [("fix", "TimezoneName"), *rest]:
            s = _parse_item(item, s, p)
        if s:
            raise _Fail(_TOO_LONG)
    return p.resolve()


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(.*)", re.ASCII | re.DOTALL
)


def _rfc3339_ns(value: str) -> int:
    """chrono's DateTime::parse_from_rfc3339."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise _Fail(_INVALID)
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    p = _Parsed()
    p.set("year", y, 0, 9999)
    p.set("month", mo, 1, 12)
    p.set("day", d, 1, 31)
    p.set_num("Hour", h)
    p.set_num("Minute", mi)
    p.set_num("Second", sec)
    if m.group(7):
        p.set("nanosecond", int(m.group(7)[:9].ljust(9, "0")), 0, _NS - 1)
    offset, rest = _offset(m.group(8), True, "one")
    if rest:
        raise _Fail(_TOO_LONG)
    if not -_DAY_S < offset < _DAY_S:
        raise _Fail(_OUT_OF_RANGE)
    p.set("offset", offset, _I32_MIN, _I32_MAX)
    return p.resolve()


# ---------------------------------------------------------------- durations (Go's ParseDuration)

_UNITS = {
    "ns": 1, "us": 1000, "\u00b5s": 1000, "\u03bcs": 1000, "ms": 1_000_000,
    "s": _NS, "m": 60 * _NS, "h": 3600 * _NS,
}  # fmt: skip


def _duration(orig: str) -> int:
    s = orig
    neg = False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise _Fail(f"invalid duration: {orig}")
    total = 0
    limit = 1 << 63
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise _Fail(f"invalid duration: {orig}")
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        v = int(s[:i]) if i else 0
        if v > limit:
            raise _Fail("overflow")
        pre, s = i > 0, s[i:]
        post, f, scale = False, 0, 1.0
        if s.startswith("."):
            s = s[1:]
            j = 0
            overflow = False
            while j < len(s) and "0" <= s[j] <= "9":
                if not overflow:
                    y = f * 10 + int(s[j])
                    if f > _I64_MAX // 10 or y > limit:
                        overflow = True
                    else:
                        f, scale = y, scale * 10.0
                j += 1
            post, s = j > 0, s[j:]
        if not pre and not post:
            raise _Fail(f"invalid duration: {orig}")
        k = 0
        while k < len(s) and not (s[k] == "." or "0" <= s[k] <= "9"):
            k += 1
        unit_name, s = s[:k], s[k:]
        if unit_name not in _UNITS:
            if not unit_name:
                raise _Fail(f"missing unit in duration: {orig}")
            raise _Fail(f"unknown unit: {unit_name[:32]}")
        unit = _UNITS[unit_name]
        if v > limit // unit:
            raise _Fail(f"invalid duration: {orig}")
        v *= unit
        if f > 0:
            v += int(f * (unit / scale))
            if v > limit:
                raise _Fail(f"invalid duration: {orig}")
        total += v
        if total > limit:
            raise _Fail(f"invalid duration: {orig}")
    if neg:
        return -total
    if total > _I64_MAX:
        raise _Fail(f"invalid duration: {orig}")
    return total


# ---------------------------------------------------------------- the builtins


def _string(fn: str, position: int, v: Any, cap: int) -> str:
    want(fn, position, v, "string")
    if len(v) > cap:
        raise BuiltinError(f"{fn}: operand {position} longer than {cap} characters")
    return v


@builtin("time.parse_rfc3339_ns")
def parse_rfc3339_ns(value: Any) -> int:
    fn = "time.parse_rfc3339_ns"
    s = _string(fn, 1, value, MAX_VALUE)
    try:
        ns = _rfc3339_ns(s)
    except _Fail as err:
        raise BuiltinError(f"{fn}: failed to parse datetime: {err}") from None
    return _in_range(fn, ns)


@builtin("time.parse_ns")
def parse_ns(layout: Any, value: Any) -> int:
    fn = "time.parse_ns"
    lay = _string(fn, 1, layout, MAX_LAYOUT)
    s = _string(fn, 2, value, MAX_VALUE)
    try:
        ns = _go_parse(lay, s)
    except _Fail as err:
        raise BuiltinError(f"{fn}: failed to parse datetime: {err}") from None
    except BuiltinError as err:
        raise BuiltinError(f"{fn}: {err}") from None
    return _in_range(fn, ns)


@builtin("time.parse_duration_ns")
def parse_duration_ns(value: Any) -> int:
    fn = "time.parse_duration_ns"
    s = _string(fn, 1, value, MAX_VALUE)
    try:
        return _duration(s)
    except _Fail as err:
        raise BuiltinError(f"{fn}: {err}") from None


@builtin("time.date")
def date(x: Any) -> list[int]:
    t, _ = _epoch("time.date", x)
    return [t.year, t.month, t.day]


@builtin("time.clock")
def clock(x: Any) -> list[int]:
    t, _ = _epoch("time.clock", x)
    return [t.hour, t.minute, t.second]


@builtin("time.weekday")
def weekday(x: Any) -> str:
    t, _ = _epoch("time.weekday", x)
    return _WEEKDAYS[t.weekday]


@builtin("time.format")
def format_(x: Any) -> str:
    fn = "time.format"
    t, layout = _epoch(fn, x)
    if layout is None:
        return _rfc3339(t)
    if len(layout) > MAX_LAYOUT:
        raise BuiltinError(f"{fn}: layout longer than {MAX_LAYOUT} characters")
    try:
        return "".join(_format_item(item, t) for item in _items(layout, parse=False))
    except BuiltinError as err:
        raise BuiltinError(f"{fn}: {err}") from None


def _i32(fn: str, position: int, v: Any) -> int:
    want(fn, position, v, "number")
    if type(v) is float:
        if not v.is_integer():
            raise BuiltinError(f"{fn}: could not convert operand {position} to int32")
        v = int(v)
    if not _I32_MIN <= v <= _I32_MAX:
        raise BuiltinError(f"{fn}: could not convert operand {position} to int32")
    return int(v)


@builtin("time.add_date")
def add_date(x: Any, years: Any, months: Any, days: Any) -> Any:
    """As chrono: the year changes first (Feb 29 into a common year: undefined), then the
    months (the day clamped to the month's end, not carried as Go does), then the days;
    a date past chrono's range is undefined, an instant past int64 an error."""
    fn = "time.add_date"
    t, _ = _epoch(fn, x)
    dy, dm, dd = _i32(fn, 2, years), _i32(fn, 3, months), _i32(fn, 4, days)
    year = t.year + dy
    if not _I32_MIN <= year <= _I32_MAX or not _YEAR_MIN <= year <= _YEAR_MAX:
        return UNDEFINED
    if t.month == 2 and t.day == 29 and not _leap(year):
        return UNDEFINED
    total = year * 12 + t.month - 1 + dm
    year, month = divmod(total, 12)
    month += 1
    if not _YEAR_MIN <= year <= _YEAR_MAX:
        return UNDEFINED
    day = min(t.day, _month_days(year, month))
    ordinal = _days_from_civil(year, month, day) + dd
    if not _days_from_civil(_YEAR_MIN, 1, 1) <= ordinal <= _days_from_civil(_YEAR_MAX, 12, 31):
        return UNDEFINED
    secs = ordinal * _DAY_S + t.hour * 3600 + t.minute * 60 + t.second - t.offset
    return _in_range(fn, secs * _NS + t.nano)


@builtin("time.diff")
def diff(a: Any, b: Any) -> list[int]:
    """[years, months, days, hours, minutes, seconds] between two instants, both seen at
    the first's offset (OPA's algorithm, as regorus ports it)."""
    fn = "time.diff"
    t1, _ = _epoch(fn, a)
    t2, _ = _epoch(fn, b)
    offset = t1.offset
    t2 = _local_fixed(t2.ns, offset)
    if t1.ns > t2.ns:
        t1, t2 = t2, t1
    year = t2.year - t1.year
    month = t2.month - t1.month
    day = t2.day - t1.day
    hour = t2.hour - t1.hour
    minute = t2.minute - t1.minute
    sec = t2.second - t1.second
    if sec < 0:
        sec, minute = sec + 60, minute - 1
    if minute < 0:
        minute, hour = minute + 60, hour - 1
    if hour < 0:
        hour, day = hour + 24, day - 1
    if day < 0:
        day, month = day + _month_days(t1.year, t1.month), month - 1
    if month < 0:
        month, year = month + 12, year - 1
    return [year, month, day, hour, minute, sec]


def _local_fixed(ns: int, offset: int) -> _Local:
    secs, nano = divmod(ns, _NS)
    days, rem = divmod(secs + offset, _DAY_S)
    y, m, d = _civil_from_days(days)
    return _Local(ns, offset, y, m, d, rem // 3600, rem // 60 % 60, rem % 60, nano)
