"""shared.devstack.liveness and the supervisor's use of it: a component that stops answering is replaced."""

from __future__ import annotations

import logging
import signal
import socket
import threading

import pytest

from shared.devstack.liveness import Liveness, http_answers, kafka_answers, postgres_answers
from shared.devstack.supervisor import Supervisor
from tests.support import FakeClock, wait_until
from tests.unit.test_supervisor import QUICK, components  # noqa: F401 (fixture)


class Answers:
    """Fake probe results by name, for the bookkeeping alone (the real probes are tested below and
    in tests/integration/test_liveness.py)."""

    def __init__(self, *names: str):
        self.answering = dict.fromkeys(names, True)

    def probes(self):
        return {name: (lambda name=name: self.answering[name]) for name in self.answering}


def asked(liveness: Liveness) -> None:
    """One round of probes, waited for."""
    liveness.ask_all()
    wait_until(lambda: not liveness.asking, what="the probes to answer")


def test_a_component_silent_for_the_limit_is_named_and_one_that_answers_is_not():
    clock, answers = FakeClock(), Answers("kafka", "upload")
    liveness = Liveness(answers.probes(), limit=30, clock=clock)
    asked(liveness)
    answers.answering["kafka"] = False
    for _ in range(29):
        clock.now += 1
        asked(liveness)
    assert liveness.silent() == []
    clock.now += 1
    asked(liveness)
    assert liveness.silent() == [("kafka", 30.0)]
    assert liveness.silent(skip={"kafka"}) == []  # e.g. its restart is already pending


def test_a_restarted_component_has_the_start_grace_for_its_first_answer_then_the_limit():
    clock, answers = FakeClock(), Answers("delivery")
    liveness = Liveness(answers.probes(), limit=5, start_grace=120, clock=clock)
    answers.answering["delivery"] = False  # still importing: no /healthz yet
    clock.now += 119
    asked(liveness)
    assert liveness.silent() == []
    answers.answering["delivery"] = True
    asked(liveness)
    clock.now += 5
    assert liveness.silent() == [("delivery", 5.0)]
    liveness.restarted("delivery")  # an answer from before a restart does not count for the new process
    clock.now += 100
    assert liveness.silent() == []
    clock.now += 20
    assert liveness.silent() == [("delivery", 120.0)]


def test_a_probe_that_hangs_holds_no_round_and_is_not_asked_twice_at_once():
    release, calls = threading.Event(), []

    def hung() -> bool:
        calls.append(1)
        release.wait(30)
        return True

    def broken() -> bool:
        raise OSError("connection reset")

    liveness = Liveness({"postgres": hung, "clamd": broken, "s3": lambda: True}, limit=30)
    try:
        liveness.ask_all()  # returns at once although postgres' probe hangs
        liveness.ask_all()
        wait_until(lambda: liveness.asking == {"postgres"}, what="the other probes to answer")
        assert set(liveness.answered) == {"s3"}  # a probe that raises is no answer
        assert len(calls) == 1
    finally:
        release.set()
    wait_until(lambda: "postgres" in liveness.answered, what="the released probe to count")


def test_the_supervisor_kills_a_silent_component_and_restarts_it_leaving_the_others(components, caplog):  # noqa: F811
    for name in ("kafka", "upload"):
        components.start(name)
    clock, answers = FakeClock(), Answers("kafka", "upload")
    liveness = Liveness(answers.probes(), limit=30, clock=clock)
    supervisor = Supervisor(
        {name: components.starter(name) for name in ("kafka", "upload")},
        components.procs,
        reap=lambda name: components.procs[name].kill(),
        backoff=QUICK,
        clock=clock,
        liveness=liveness,
    )
    stopped, steady = components.procs["kafka"], components.procs["upload"].pid
    asked(liveness)  # both answered once: their start is complete
    stopped.send_signal(signal.SIGSTOP)  # what stands in for a wedged broker
    answers.answering["kafka"] = False
    asked(liveness)
    clock.now += 31
    asked(liveness)

    with caplog.at_level(logging.INFO, logger="fileshare.stack"):
        assert supervisor.check()
        clock.now += 1
        assert supervisor.check()

    assert stopped.poll() == -signal.SIGKILL
    assert components.starts == {"kafka": 2, "upload": 1} and components.procs["upload"].pid == steady
    assert "kafka has not answered its liveness check for 31s (limit 30s); killing it" in caplog.text
    assert "kafka exited with -9; restarting in 0.0s (restart 1 in the last 60s)" in caplog.text
    assert "kafka restarted" in caplog.text
    assert supervisor.check() and liveness.silent() == []  # the new process has its start grace


def test_a_component_that_keeps_hanging_counts_towards_giving_up(components):  # noqa: F811
    components.start("clamd")
    clock, answers = FakeClock(), Answers("clamd")
    answers.answering["clamd"] = False
    liveness = Liveness(answers.probes(), limit=5, start_grace=5, clock=clock)
    supervisor = Supervisor(
        {"clamd": components.starter("clamd")},
        components.procs,
        reap=lambda name: components.procs[name].kill(),
        max_exits=3,
        backoff=QUICK,
        clock=clock,
        liveness=liveness,
    )
    results = []
    for _ in range(3):
        clock.now += 6
        results.append(supervisor.check())
        clock.now += 1
        supervisor.check()  # the restart
    assert results == [True, True, False] and supervisor.gave_up == "clamd"


@pytest.fixture
def silent_server():
    """A server that takes connections (the kernel's backlog) and never answers: a stopped process."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_the_probes_say_no_within_their_timeout_to_a_server_that_never_answers(silent_server):
    assert not http_answers("127.0.0.1", silent_server, "GET", "/healthz", timeout=0.3)
    assert not kafka_answers("127.0.0.1", silent_server, timeout=0.3)
    assert not postgres_answers(f"postgresql://u:p@127.0.0.1:{silent_server}/db", timeout=1)
