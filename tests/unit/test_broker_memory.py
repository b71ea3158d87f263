"""shared.devstack.broker_memory: when `make run` restarts its embedded broker to free its memory (over
FS_EMBEDDED_BROKER_MAX_MB and quiet), and the supervisor doing it without counting an exit."""

from __future__ import annotations

import logging
import os

from shared.devstack.broker_memory import MB, BrokerRecycler, LauncherMetrics, Probe, groups_behind, tree_rss, verdict
from shared.devstack.supervisor import Supervisor
from tests.support import FakeClock
from tests.unit.test_supervisor import QUICK, components  # noqa: F401  (the fixture)

LIMIT = 512 * MB


def test_under_the_limit_nothing_is_done_whatever_the_lag():
    assert verdict(Probe(1, 100 * MB, behind=("fileshare-delivery",), in_flight=3), LIMIT) == "fine"


def test_over_the_limit_it_recycles_only_when_quiet():
    assert verdict(Probe(1, 530 * MB), LIMIT) == "recycle"
    assert verdict(Probe(1, 530 * MB, behind=("fileshare-sanitizer",)), LIMIT) == "wait"
    assert verdict(Probe(1, 530 * MB, in_flight=1), LIMIT) == "wait"
    assert verdict(Probe(1, 530 * MB, in_flight=None), LIMIT) == "wait"  # the database did not answer
    assert verdict(Probe(1, 530 * MB, settled=False), LIMIT) == "wait"  # just restarted: never in a loop


def test_a_group_is_behind_until_it_committed_every_end():
    ends = {("file.resized", 0): 10, ("file.resized", 1): 4, ("message.published", 0): 7}
    committed = {
        "fileshare-delivery": {("file.resized", 0): 10, ("file.resized", 1): 4},
        "platform": {("message.published", 0): 6},
        "lost": {("file.resized", 0): 12},  # past the end: the log was lost under it
        "unknown": {("conversation.events", 0): 3},
    }  # that end could not be read
    assert groups_behind(committed, ends) == ["lost", "platform", "unknown"]
    assert groups_behind({"fileshare-delivery": committed["fileshare-delivery"]}, ends) == []


def recycler(rss_limit: int, quiet=((), 0), clock=None) -> BrokerRecycler:
    return BrokerRecycler(
        rss_limit,
        pid=os.getpid,
        quiet_check=lambda: quiet,
        clock=clock or FakeClock(),
        metrics=LauncherMetrics(),
        min_age=0,
    )


def test_the_probe_reads_the_resident_memory_of_the_process_tree():
    assert tree_rss(os.getpid()) > 1 * MB
    watcher = recycler(LIMIT * 1024)
    probe = watcher.probe()
    assert probe.rss == watcher.metrics.resident._value.get() > 0
    assert verdict(probe, watcher.limit) == "fine"


def test_a_due_recycle_is_taken_once_and_only_while_fresh():
    clock = FakeClock()
    watcher = recycler(1, clock=clock)
    watcher.note(watcher.probe())
    assert watcher.due(current_pid=os.getpid() + 1) is None  # another broker than the one probed
    assert watcher.due(current_pid=os.getpid()) is not None
    assert watcher.due(current_pid=os.getpid()) is None  # taken
    watcher.note(watcher.probe())
    clock.now += 3 * watcher.interval
    assert watcher.due(current_pid=os.getpid()) is None  # stale: the next probe decides


def test_over_the_limit_and_never_quiet_it_warns_once_an_hour(caplog):
    clock = FakeClock()
    watcher = recycler(1, quiet=(["platform-7"], 2), clock=clock)
    with caplog.at_level(logging.WARNING, logger="fileshare.stack"):
        for _ in range(3 * 60 + 1):  # three hours of probes, a minute apart
            watcher.note(watcher.probe())
            clock.now += 60
    lines = [r.getMessage() for r in caplog.records if "cannot be recycled yet" in r.getMessage()]
    assert len(lines) == 3  # after its first hour over the limit, then each hour
    assert (
        "(limit 0 MB) and cannot be recycled yet: consumer groups behind: platform-7; 2 file(s) in flight" in lines[0]
    )
    assert watcher.due(os.getpid()) is None


def test_the_supervisor_restarts_a_broker_over_its_limit_in_a_quiet_moment(components, caplog):  # noqa: F811
    components.start("kafka")
    components.start("upload")
    first, steady = components.procs["kafka"].pid, components.procs["upload"].pid
    watcher = BrokerRecycler(
        1, pid=lambda: components.procs["kafka"].pid, quiet_check=lambda: ((), 0), metrics=LauncherMetrics(), min_age=0
    )
    supervisor = Supervisor(
        {"kafka": components.starter("kafka"), "upload": components.starter("upload")},
        components.procs,
        reap=lambda name: components.procs[name].kill(),
        backoff=QUICK,
        recycler=watcher,
    )
    watcher.note(watcher.probe())
    with caplog.at_level(logging.INFO, logger="fileshare.stack"):
        assert supervisor.check()

    assert components.procs["kafka"].pid != first and components.procs["kafka"].poll() is None
    assert components.procs["upload"].pid == steady
    assert watcher.metrics.recycles._value.get() == 1
    assert supervisor.recent_exits("kafka") == 0  # a deliberate restart, not an exit
    assert "and every consumer group is caught up: restarting it to free its memory" in caplog.text
    assert supervisor.check() and components.starts["kafka"] == 2  # one probe, one restart


def test_a_broker_just_started_is_not_recycled_again():
    clock = FakeClock()
    watcher = BrokerRecycler(1, pid=os.getpid, quiet_check=lambda: ((), 0), clock=clock, min_age=30)
    watcher.note(watcher.probe())
    assert watcher.due(os.getpid()) is None
    clock.now += 30
    watcher.note(watcher.probe())
    assert watcher.due(os.getpid()) is not None
