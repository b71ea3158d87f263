"""The linter and the type checker, with the settings of pyproject.toml: `make test` fails with
their findings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = run("ruff", "check", "shared", "services", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_shared_and_services():
    done = run("mypy")  # the files and settings: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_code_is_formatted():
    done = run("ruff", "format", "--check", "shared", "services", "tests", "bench")
    assert done.returncode == 0, "run `uv run ruff format shared services tests bench`\n" + done.stdout + done.stderr
