"""``a1 token``, ``a1 cells lookup`` and the argument checks, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from a1 import pki
from a1.cli import main
from policies.core.cells import CellTable


@pytest.fixture
def state(tmp_path: Path) -> Path:
    pki.ensure_pki(tmp_path)
    CellTable.balanced(["cell-1", "cell-2", "cell-3"]).with_overrides(
        {"pinned-co": "cell-3"}).save(tmp_path / "cells.yaml")
    return tmp_path


def test_token_prints_a_verifiable_jwt(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--tenant", "acme", "--roles", "reader,writer", "--ttl", "120",
                 "--sub", "alice", "--state-dir", str(state)]) == 0
    claims = pki.verify_token(state, capsys.readouterr().out.strip())
    assert (claims["sub"], claims["tenant"], claims["roles"]) == ("alice", "acme",
                                                                  ["reader", "writer"])
    assert claims["exp"] - claims["iat"] == 120


def test_token_without_keys_names_the_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--tenant", "acme", "--roles", "reader",
                 "--state-dir", str(tmp_path)]) == 1
    assert "jwt-signing-key.pem" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--roles", "reader,,writer"], ["--roles", "r", "--ttl", "0"],
                                  ["--roles", "r", "--ttl", "soon"]])
def test_token_argument_errors(state: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--tenant", "acme", *args, "--state-dir", str(state)])
    assert exit_.value.code == 2


def test_cells_lookup(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = CellTable.load(state / "cells.yaml")
    assert main(["cells", "lookup", "acme", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"bucket={table.bucket_of('acme')} cell={table.lookup('acme')}" in out
    assert main(["cells", "lookup", "pinned-co", "--state-dir", str(state)]) == 0
    assert "cell=cell-3 (override" in capsys.readouterr().out


def test_cells_lookup_without_a_table(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cells", "lookup", "acme", "--state-dir", str(tmp_path)]) == 1
    assert "no platform spec and no cells.yaml" in capsys.readouterr().err


def test_envoy_bootstrap_bad_mode_is_an_argument_error(state: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["envoy", "bootstrap", "--mode", "istio", "--state-dir", str(state)])
    assert exit_.value.code == 2


def test_up_with_an_unsupported_policy_fails_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text('package a1.authz\n\ndecision := {"allow": http.send({})}\n')
    state = tmp_path / "state"
    code = main(["up", "--state-dir", str(state), "--policy", str(bad), "--http-port", "1",
                 "--https-port", "2", "--admin-port", "3", "--internal-port-base", "4000"])
    assert code == 3
    assert f"{bad}:3:23: unsupported: builtin function `http.send`" in capsys.readouterr().err
    assert not (state / "envoy.yaml").exists()


def test_growing_the_cell_count_moves_buckets_only_to_new_cells(tmp_path: Path) -> None:
    from a1.stack import ensure_cells_table

    path = tmp_path / "cells.yaml"
    three, note = ensure_cells_table(path, ["cell-1", "cell-2", "cell-3"])
    assert note is None
    assert ensure_cells_table(path, ["cell-1", "cell-2", "cell-3"]) == (three, None)
    four, note = ensure_cells_table(path, ["cell-1", "cell-2", "cell-3", "cell-4"])
    assert note is not None and "cell-4" in note
    changed = [b for b in range(four.buckets) if four.cell_of_bucket(b) != three.cell_of_bucket(b)]
    assert {four.cell_of_bucket(b) for b in changed} == {"cell-4"}
    assert len(changed) == four.buckets // 4


def test_up_policy_input_is_checked(state: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--state-dir", str(state), "--policy-input", "opa"])
    assert exit_.value.code == 2


def test_up_an_opa_envoy_policy_without_its_input_names_the_missing_entrypoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The primer has no a1/authz/decision: without --policy-input opa-envoy (whose
    entrypoint is envoy/authz/allow) the build fails before anything starts."""
    from a1.package_data import policy_library

    primer = policy_library() / "opa_envoy_primer.rego"
    state = tmp_path / "state"
    code = main(["up", "--state-dir", str(state), "--policy", str(primer), "--http-port", "1",
                 "--https-port", "2", "--admin-port", "3", "--internal-port-base", "4000"])
    assert code != 0
    assert "a1/authz/decision" in capsys.readouterr().err
    assert not (state / "envoy.yaml").exists()
