"""shared.devstack.supervisor: what `make run` does when something it started exits."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from shared.devstack.supervisor import Backoff, Supervisor
from tests.support import FakeClock, wait_until

QUICK = Backoff(first=0.01, longest=0.05)


class Components:
    """Real child processes by name: `start(name, code)` runs one that exits with `code` at once,
    or one that runs until stopped when code is None."""

    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    def start(self, name: str, code: int | None = None) -> None:
        script = "import time; time.sleep(600)" if code is None else f"raise SystemExit({code})"
        self.procs[name] = subprocess.Popen([sys.executable, "-c", script])
        self.starts[name] = self.starts.get(name, 0) + 1

    def starter(self, name: str, code: int | None = None):
        return lambda: self.start(name, code)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def components():
    made = Components()
    yield made
    made.stop_all()


def test_a_component_that_exits_is_restarted_and_the_others_keep_running(components, caplog):
    components.start("kafka")
    components.start("upload")
    steady = components.procs["upload"].pid
    supervisor = Supervisor(
        {"kafka": components.starter("kafka"), "upload": components.starter("upload")}, components.procs, backoff=QUICK
    )
    components.procs["kafka"].kill()
    components.procs["kafka"].wait()

    with caplog.at_level(logging.INFO, logger="fileshare.stack"):
        wait_until(lambda: supervisor.check() and components.starts["kafka"] == 2, what="kafka to be restarted")

    assert components.procs["kafka"].poll() is None
    assert components.procs["upload"].pid == steady and components.starts["upload"] == 1
    assert "kafka exited with -9; restarting in 0.0s (restart 1 in the last 60s)" in caplog.text
    assert "kafka restarted" in caplog.text


def test_a_component_that_keeps_dying_makes_the_supervisor_give_up(components, caplog):
    components.start("upload")
    components.start("sanitizer", code=3)
    supervisor = Supervisor(
        {"upload": components.starter("upload"), "sanitizer": components.starter("sanitizer", code=3)},
        components.procs,
        max_exits=5,
        backoff=QUICK,
    )

    with caplog.at_level(logging.INFO, logger="fileshare.stack"):
        assert supervisor.run(stopping=lambda: False, poll=0.01) == 1

    assert supervisor.gave_up == "sanitizer"
    assert components.starts["sanitizer"] == 5  # the first start and 4 restarts
    assert "restart 4 in the last 60s" in caplog.text
    assert "sanitizer exited with 3: 5 exits in the last 60s, it keeps dying; stopping everything" in caplog.text


def test_exits_older_than_the_window_are_forgotten(components):
    clock = FakeClock(1000.0)
    supervisor = Supervisor(
        {"resizer": components.starter("resizer")}, components.procs, max_exits=3, window=60, backoff=QUICK, clock=clock
    )
    for _ in range(2):
        assert supervisor._exited("resizer", -9)
    clock.now += 61
    assert supervisor.recent_exits("resizer") == 0
    assert supervisor._exited("resizer", -9)  # a third exit, but the first of this minute


def test_a_failed_restart_counts_as_an_exit(components, caplog):
    def broken_start():
        raise RuntimeError("postgres exited with 1: could not bind\nmore detail")

    components.start("postgres", code=1)
    supervisor = Supervisor({"postgres": broken_start}, components.procs, max_exits=3, backoff=QUICK)

    with caplog.at_level(logging.INFO, logger="fileshare.stack"):
        assert supervisor.run(stopping=lambda: False, poll=0.01) == 1

    assert "postgres exited with a failed start (postgres exited with 1: could not bind); restarting" in caplog.text


def test_the_supervisor_returns_0_when_asked_to_stop(components):
    components.start("retention")
    supervisor = Supervisor({"retention": components.starter("retention")}, components.procs, backoff=QUICK)
    assert supervisor.run(stopping=lambda: True) == 0


def test_backoff_doubles_up_to_its_longest():
    assert [Backoff(first=0.5, longest=4).delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
