"""A bad file at sidecar startup: one line naming the file and field, exit 2, no traceback.

Run as users run it, ``python -m ext_proc --config FILE`` in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_engine import CELLS, compile_authz

ROOT = Path(__file__).resolve().parent.parent
GOOD_CONFIG = (
    "grpc_address: 127.0.0.1:0\npolicy: {module: authz.wasm}\ncells: {table: cells.yaml}\n"
)


def run(tmp: Path, config: bytes | None = None, cells: bytes | None = None) -> tuple[int, str]:
    (tmp / "authz.wasm").write_bytes(compile_authz())
    CELLS.save(tmp / "cells.yaml")
    if cells is not None:
        (tmp / "cells.yaml").write_bytes(cells)
    cfg = tmp / "sidecar.yaml"
    cfg.write_bytes(config if config is not None else GOOD_CONFIG.encode())
    r = subprocess.run([sys.executable, "-m", "ext_proc", "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


@pytest.fixture(scope="module")
def cells_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    p = tmp_path_factory.mktemp("c") / "cells.yaml"
    CELLS.save(p)
    return p.read_text()


CONFIG_CASES = [
    (b"grpc_address: \xff\xfe\n", "sidecar.yaml: not valid UTF-8 (byte 14)"),
    (GOOD_CONFIG.encode() + b"cache: {max_bytes: lots}\n", "cache.max_bytes: must be a size"),
    (GOOD_CONFIG.encode() + b"cache: {max_bytes: -1}\n", "cache.max_bytes: must be a size"),
    (GOOD_CONFIG.encode() + b"decision_log: {path: d.jsonl, max_bytes: 1}\n",
     "decision_log.max_bytes: must be a size"),
    (GOOD_CONFIG.encode() + b"limits: {max_path: 10}\n", "limits.max_path: must be an integer"),
    (GOOD_CONFIG.encode() + b"claims_cache: {size: x}\n", "claims_cache.size: must be"),
    (GOOD_CONFIG.encode() + b"limits: {max_header: 1}\n", "limits.max_header: unknown field"),
    (b"grpc_address: unix:/tmp/" + b"s" * 120 + b".sock\npolicy: {module: authz.wasm}\n"
     b"cells: {table: cells.yaml}\n", "grpc_address: unix socket path is"),
    (b"[" * 3000 + b"]" * 3000, "sidecar.yaml: invalid YAML: nested too deeply"),
]


@pytest.mark.parametrize(("config", "expected"), CONFIG_CASES,
                         ids=[e.split(":")[-1].strip()[:30] for _, e in CONFIG_CASES])
def test_bad_sidecar_config(tmp_path: Path, config: bytes, expected: str) -> None:
    code, err = run(tmp_path, config=config)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ext_proc: ") and expected in lines[0], err


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: b"cells: [\xff]\n", "cells.yaml: not valid UTF-8 (byte 8)"),
    (lambda t: b"[" * 3000 + b"]" * 3000, "cells.yaml: invalid YAML: nested too deeply"),
    (lambda t: t.replace("overrides: {}", "overrides: {acme: [1]}").encode(),
     "cells.yaml: overrides.acme: unknown cell [1]"),
    (lambda t: t.replace("overrides: {}", "overrides: {ACME: cell-1}").encode(),
     "cells.yaml: overrides.ACME: tenant id 'ACME' does not match"),
    (lambda t: t.replace("cell-1]", "[x]]", 1).encode(),
     "cells.yaml: assignment[0][2]: unknown cell ['x']"),
])  # fmt: skip
def test_bad_cells_table(tmp_path: Path, cells_text: str, edit: object, expected: str) -> None:
    code, err = run(tmp_path, cells=edit(cells_text))  # type: ignore[operator]
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_cells_table_that_is_a_directory(tmp_path: Path) -> None:
    cfg = GOOD_CONFIG.replace("cells.yaml", "cells.d").encode()
    (tmp_path / "cells.d").mkdir()
    code, err = run(tmp_path, config=cfg)
    assert code == 2 and err.strip().endswith("cells.d: is a directory, not a file"), err
