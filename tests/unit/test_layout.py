"""The layout's two rules: the development stack (shared/devstack: the embedded servers of `make run`
and the tests) is not part of the product, and shared/ never depends on a service."""

from __future__ import annotations

import ast
import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
DEVSTACK = SHARED / "devstack"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def product_modules() -> list[Path]:
    return [p for p in SHARED.rglob("*.py") if DEVSTACK not in p.parents]


def test_no_product_module_imports_the_development_stack():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("shared.devstack"))
        for p in product_modules()
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_no_service_imports_the_development_stack():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("shared.devstack"))
        for p in (ROOT / "services").rglob("*.py")
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_shared_never_imports_a_service():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "services")
        for p in SHARED.rglob("*.py")
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_the_wheel_leaves_the_development_stack_out(tmp_path):
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")  # make test installs it
    assert Path(uv).exists(), "uv is missing: `make test` installs it (python3 -m pip install --user uv)"
    command = [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=240)
    (wheel,) = tmp_path.glob("fileshare-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "shared/contract/events.py" in names and "services/cli.py" in names
    assert [n for n in names if n.startswith("shared/devstack/")] == []
