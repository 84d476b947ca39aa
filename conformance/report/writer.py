"""``write_report``: the three outputs of ``--report DIR`` from one history and its checks."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from conformance.checkers.base import CheckResult
from conformance.history import History
from conformance.report.junit import junit_xml
from conformance.report.page import report_html
from conformance.report.yaml_report import dump_yaml, report_document
from policies.core.errors import UserError

FILES = {"yaml": "report.yaml", "junit": "junit.xml", "html": "report.html"}


def write_report(dir: Path, history: History, results: list[CheckResult], *, profile: str,
                 implementation: str = "a1", version: str, runtime: str = "process",
                 duration_s: float) -> dict[str, Path]:
    """Write ``report.yaml``, ``junit.xml`` and ``report.html`` into ``dir`` (created if
    missing); returns their paths keyed ``yaml``, ``junit``, ``html``. Each file is
    written whole and renamed into place, so a reader never sees half a report."""
    dir = Path(dir)
    try:
        dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{dir}: cannot create the report directory: "
                        f"{err.strerror or err}") from None
    args = {"profile": profile, "implementation": implementation, "version": version,
            "runtime": runtime, "duration_s": duration_s}
    doc = report_document(history, results, **args)
    date = str(doc["date"] or datetime.now(UTC).isoformat(timespec="seconds"))
    contents = {
        "yaml": dump_yaml(doc).encode(),
        "junit": junit_xml(history, results, timestamp=date, **args),
        "html": report_html(history, results, date=date, **args).encode(),
    }
    paths = {key: dir / FILES[key] for key in FILES}
    for key, data in contents.items():
        _write_atomic(paths[key], data)
    return paths


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write: {err.strerror or err}") from None
