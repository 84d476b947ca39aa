"""The history format: events round-trip through JSON Lines; a bad file is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.history import (
    MAX_LINE,
    FaultEvent,
    History,
    HistoryError,
    Meta,
    Observation,
    Op,
    Recorder,
    Window,
    from_json,
    to_json,
)

text = st.text(max_size=20)
times = st.floats(0, 1e6, allow_nan=False)
ops = st.builds(Op, scenario=text, f=st.sampled_from(["read", "write", "readback", "probe"]),
                tenant=text, group=text, invoke=times, complete=times,
                status=st.none() | st.integers(100, 599), expected_cell=st.none() | text,
                observed_cell=st.none() | text, policy_version=st.none() | text,
                authorized=st.booleans(), value=st.none() | text | st.lists(text, max_size=3),
                error=st.none() | text)
events = st.one_of(
    ops,
    st.builds(Window, scenario=text, name=st.sampled_from(["control", "fault", "recovery"]),
              start=times, end=times),
    st.builds(FaultEvent, scenario=text, fault=text, action=st.sampled_from(["inject", "repair"]),
              t=times, expect=text),
    st.builds(Observation, scenario=text, name=text, t=times,
              value=st.none() | st.integers() | text | st.dictionaries(text, st.integers())),
)


@given(st.lists(events, max_size=20))
def test_events_round_trip_through_a_file(tmp_path_factory: pytest.TempPathFactory,
                                          evs: list) -> None:  # type: ignore[type-arg]
    path = tmp_path_factory.mktemp("h") / "history.jsonl"
    rec = Recorder(path)
    rec.record(Meta("run", 1, "quick", "a1", "0.1", "2026-01-01T00:00:00+00:00"))
    rec.extend(evs)
    rec.close()
    loaded = History.load(path)
    assert loaded.events == rec.history.events
    assert loaded.meta is not None and loaded.meta.seed == 1


def test_filters_select_by_scenario_window_function_and_group() -> None:
    h = History([Window("s", "fault", 1.0, 2.0),
                 Op("s", "read", "t", "g", 0.5, 0.6, 200),
                 Op("s", "read", "t", "g", 1.5, 1.6, 503),
                 Op("s", "write", "t", "h", 1.7, 1.8, 201),
                 Op("other", "read", "t", "g", 1.5, 1.6, 200)])
    assert [o.status for o in h.ops("s", "fault")] == [503, 201]
    assert [o.status for o in h.ops("s", "fault", f="read", group="g")] == [503]
    assert h.scenarios() == ["s", "other"]


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not JSON"),
    ("[1, 2]", "an event is a JSON object"),
    ('{"type": "nope"}', "unknown event type"),
    ('{"type": "window", "scenario": "s", "name": "c", "start": 1}', "missing"),
    ('{"type": "window", "scenario": "s", "name": "c", "start": "1", "end": 2}',
     "window.start: expected float"),
    ('{"type": "op", "scenario": "s", "f": "read", "tenant": "t", "group": "g", "invoke": 1,'
     ' "complete": 2, "status": true}', "op.status"),
    ('{"type": "window", "scenario": "s", "name": "c", "start": 1, "end": 2, "x": 1}',
     "unexpected keyword"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_a_bad_event_names_its_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "h.jsonl"
    good = to_json(Window("s", "control", 0.0, 1.0))
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(HistoryError, match=message) as err:
        History.load(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert err.value.code == 2


def test_huge_lines_non_utf8_and_missing_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"type": "meta"' + b" " * MAX_LINE + b"}\n")
    with pytest.raises(HistoryError, match="longer than"):
        History.load(path)
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(HistoryError, match="not UTF-8"):
        History.load(path)
    with pytest.raises(HistoryError, match="cannot read"):
        History.load(tmp_path / "absent.jsonl")


def test_from_json_keeps_values_exactly() -> None:
    op = Op("s", "readback", "t", "g", 1.25, 1.5, 200, value=["a", "b"], policy_version="v1")
    assert from_json(to_json(op)) == op


def test_a_recorder_is_bounded_and_a_cut_history_fails_the_run(tmp_path: Path) -> None:
    from conformance.runner import judge

    rec = Recorder(tmp_path / "h.jsonl", max_bytes=2000)
    for i in range(100):
        rec.record(Op("I-1/kill-control", "read", "t", "g", float(i), i + 0.1, 200))
    rec.close()
    assert rec.truncated and rec.bytes <= 2000 + 200
    loaded = History.load(tmp_path / "h.jsonl")
    assert loaded.events == rec.history.events
    assert loaded.observations("*", "history_truncated")
    verdicts = judge(loaded)
    cut = [r for r in verdicts if r.statistic == "history bounded"]
    assert cut and not cut[0].passed and "was cut" in cut[0].detail
