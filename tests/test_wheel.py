"""A built wheel, not the checkout: ``pip install`` of it gives a working ``a1 up``.

The wheel is built from a copy of the working tree without build isolation (no
network), installed into a fresh venv outside the source tree, and run from a
working directory outside it too. The venv sees the base environment's
dependencies (``--system-site-packages``), but a ``sitecustomize`` in the venv
removes the base environment's editable install of this checkout, so nothing
can be imported from the source tree: the venv is what a user who ran
``pip install a1-….whl`` has.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.harness.stacks import port_args

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
PYVER = f"python{sys.version_info.major}.{sys.version_info.minor}"

# Makes the venv blind to the base environment's editable install of the checkout.
SITECUSTOMIZE = '''"""Test isolation: only the wheel's A1 is importable, never the checkout."""
import sys

ROOT = {root!r}
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable___a1_")]
sys.path[:] = [p for p in sys.path
               if "__editable__.a1-" not in p and p != ROOT and not p.startswith(ROOT + "/")]
'''

# Run inside the venv: where every shipped thing resolves from there.
WHERE = """
import json
from importlib import resources
import a1, conformance, control, ext_proc, policies
from a1 import package_data
from a1.stack import DEFAULT_POLICY, DEFAULT_POLICY_DATA
from a1.envoy_bootstrap import TEMPLATE_DIR
import a1.bench.policy, a1.bench.sidecar  # what `a1 bench` imports
import envoy.config.core.v3 as protos
print(json.dumps({
    "a1": a1.__file__, "policies": policies.__file__, "ext_proc": ext_proc.__file__,
    "control": control.__file__, "conformance": conformance.__file__,
    "bench": a1.bench.policy.__file__,
    "templates": str(package_data.envoy_templates() / "bootstrap.yaml"),
    "template_dir": str(TEMPLATE_DIR / "fragments" / "hcm.yaml"),
    "runtime": str(resources.files("policies.runtime") / "a1rt.wasm"),
    "policy": str(DEFAULT_POLICY), "policy_data": str(DEFAULT_POLICY_DATA),
    "protos": protos.__file__,
}))
"""


@dataclass(frozen=True)
class Installed:
    src: Path  # the copy of the working tree the wheel was built from
    wheel: Path
    venv: Path

    @property
    def site(self) -> Path:
        return self.venv / "lib" / PYVER / "site-packages"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        """A user's shell with the venv activated: no PYTHON* overrides from the test run."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        return env


def run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=300, check=False, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n" \
                                   f"{result.stderr}"
    return result


def shipped_packages(root: Path) -> list[str]:
    """Top-level packages the wheel ships, from pyproject's packages.find include list."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(ROOT)
    # Build from a copy: an in-tree build would write build/ and *.egg-info into the checkout.
    src = base / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".a1", ".pytest_cache",
        ".hypothesis", ".ruff_cache", ".venv", "venv"))
    dist = base / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", dist, src])
    (wheel,) = dist.glob("a1-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    inst = Installed(src, wheel, venv)
    (inst.site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(root=str(ROOT)))
    run([inst.python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
         "-q", wheel], env=inst.env(), cwd=base)
    return inst


def test_the_wheel_ships_every_module_and_the_data_and_no_top_level_envoy(
        installed: Installed) -> None:
    root = installed.src  # not the checkout: other work may change it meanwhile
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
        shipped = {n for n in names if ".dist-info/" not in n}
        top_level = zf.read(next(n for n in names if n.endswith(".dist-info/top_level.txt")))
        # envoy/ stays a directory of templates: a top-level `envoy` in the wheel would
        # overwrite the Envoy wheel's package and the xDS protobuf classes.
        assert not any(n.startswith(("envoy/", "tests/", "e2e/")) for n in shipped)
        assert set(top_level.decode().split()) == set(shipped_packages(root))

        modules = {p.relative_to(root).as_posix()
                   for pkg in shipped_packages(root) for p in (root / pkg).rglob("*.py")
                   if "__pycache__" not in p.parts}
        assert modules == {n for n in shipped if n.endswith(".py")}

        templates = sorted(p for p in (root / "envoy").rglob("*.yaml"))
        assert templates, "no Envoy templates in envoy/"
        for t in templates:
            assert zf.read(f"control/envoy_templates/{t.relative_to(root / 'envoy').as_posix()}") \
                == t.read_bytes(), t
        data = [root / "policies" / "runtime" / "a1rt.wasm",
                *(root / "policies" / "library").glob("*.rego"),
                root / "policies" / "library" / "data.json"]
        for d in data:
            assert zf.read(d.relative_to(root).as_posix()) == d.read_bytes(), d


def test_the_installed_copy_resolves_everything_inside_the_venv(
        installed: Installed, tmp_path: Path) -> None:
    out = run([installed.python, "-I", "-c", WHERE], env=installed.env(), cwd=tmp_path)
    where = {k: Path(v) for k, v in json.loads(out.stdout).items()}
    protos = where.pop("protos")
    for name, path in where.items():
        assert path.is_relative_to(installed.site), f"{name}: {path}"
        assert path.is_file(), f"{name}: {path}"
    # `envoy` is still the protobuf namespace, from the base environment.
    assert not protos.is_relative_to(ROOT) and not protos.is_relative_to(installed.site / "a1")
    assert protos.parts[-5:] == ("envoy", "config", "core", "v3", "__init__.py")




def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


def get(port: int, path: str, token: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.fixture
def up(installed: Installed, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``a1 up`` from the venv, in a directory outside the source tree; always torn down."""
    state = tmp_path / "state"
    ports = port_args()
    with open(tmp_path / "up.out", "wb") as out, open(tmp_path / "up.err", "wb") as err:
        proc = subprocess.Popen(
            [str(installed.venv / "bin" / "a1"), "up", "--state-dir", str(state), *ports],
            cwd=tmp_path, env=installed.env(), stdout=out, stderr=err, start_new_session=True)
    try:
        yield proc, state
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_mentioning(str(state)):
            os.kill(pid, signal.SIGKILL)


def test_a1_up_from_the_installed_wheel_serves_and_sigterm_stops_it(
        installed: Installed, up: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, state = up
    http_port = int(proc.args[proc.args.index("--http-port") + 1])  # type: ignore[union-attr]
    a1 = installed.venv / "bin" / "a1"

    def stderr() -> str:
        return (tmp_path / "up.err").read_text(errors="replace")

    token = None
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"a1 up exited {proc.returncode}: {stderr()}"
        assert time.monotonic() < deadline, f"no authorized request got through: {stderr()}"
        if token is None:
            minted = subprocess.run(
                [str(a1), "token", "--tenant", "acme", "--roles", "reader", "--state-dir",
                 str(state)], cwd=tmp_path, env=installed.env(), capture_output=True,
                text=True, timeout=60, check=False)
            token = minted.stdout.strip() if minted.returncode == 0 else None
        try:
            if token is not None and get(http_port, "/t/acme/items", token) == 200:
                break
        except OSError:
            pass  # Envoy not listening yet
        time.sleep(0.2)

    assert get(http_port, "/t/acme/items") == 401  # no token: Envoy's jwt_authn
    assert get(http_port, "/t/globex/items", token) == 403  # cross-tenant: the shipped policy
    # Every Python child (cells, sidecar) runs the venv's interpreter, so the wheel's copy.
    argvs = [Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
             for pid in processes_mentioning(str(state)) if pid != proc.pid]
    python_children = [argv for argv in argvs if argv[1:2] == ["-m"]]
    assert len(python_children) == len(argvs) - 1  # and Envoy
    for argv in python_children:
        assert Path(argv[0]).is_relative_to(installed.venv), argv

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, stderr()
    assert processes_mentioning(str(state)) == []
    assert "Traceback" not in stderr()


def test_a_zipped_install_is_refused_in_one_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from a1.package_data import packaged
    from policies.core.errors import UserError

    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_a1_data/__init__.py", "")
        zf.writestr("zipped_a1_data/fragments/hcm.yaml", "{}\n")
    monkeypatch.syspath_prepend(str(archive))
    try:
        with pytest.raises(UserError) as err:
            packaged("zipped_a1_data", "fragments", "hcm.yaml")
    finally:
        sys.modules.pop("zipped_a1_data", None)
    assert str(err.value) == ("zipped_a1_data/fragments/hcm.yaml: A1 must be installed as "
                              "files, not from a zip archive")
    assert err.value.code == 2
