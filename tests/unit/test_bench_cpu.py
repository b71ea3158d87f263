"""bench.cpu: CPU seconds of a process tree from /proc/<pid>/stat (live and reaped processes)."""

import os
import subprocess
import sys
import time

from bench.cpu import Stat, cpu_seconds, delta, parse_stat, read_stats, tree_ticks


def stat_line(pid, comm, ppid, utime, stime, cutime, cstime):
    # Fields 1..17 of proc(5), then a few more that are ignored.
    return (
        f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 12345 1000 100\n"
    )


def test_parse_stat_takes_fields_after_the_last_parenthesis():
    s = parse_stat(stat_line(42, "python -m (worker) x", 7, 10, 5, 3, 2))
    assert s == Stat(pid=42, ppid=7, own_ticks=15, children_ticks=5)


def test_tree_sums_live_descendants_and_their_reaped_children_once():
    stats = {
        1: Stat(1, 0, 1000, 0),  # not in the tree
        10: Stat(10, 1, 5, 7),  # root: 5 own, 7 from children it reaped
        11: Stat(11, 10, 20, 0),  # fork server
        12: Stat(12, 11, 30, 4),  # worker
        13: Stat(13, 11, 40, 0),  # worker
        20: Stat(20, 1, 99, 0),  # a sibling tree
        21: Stat(21, 20, 99, 0),
    }
    assert tree_ticks(10, stats) == 5 + 7 + 20 + 30 + 4 + 40
    assert tree_ticks(13, stats) == 40
    assert tree_ticks(99, stats) is None


def test_cpu_seconds_and_delta_skip_what_is_gone():
    stats = {10: Stat(10, 1, 100, 0), 11: Stat(11, 10, 50, 0)}
    now = cpu_seconds({"svc": 10, "gone": 77}, stats)
    assert set(now) == {"svc"} and now["svc"] > 0
    assert delta({"svc": 1.0, "old": 3.0}, {"svc": 2.5, "new": 1.0}) == {"svc": 1.5}


def test_a_real_child_that_exited_is_still_counted():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "subprocess.run([sys.executable, '-c', 'x = 0\\nfor i in range(3_000_000): x += i'])\n"
            "time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = read_stats()
            if child.pid in stats and stats[child.pid].children_ticks > 0:
                break
            time.sleep(0.05)
        stats = read_stats()
        assert stats[child.pid].children_ticks > 0  # the grandchild ran and was reaped
        assert cpu_seconds({"c": child.pid}, stats)["c"] >= stats[child.pid].children_ticks / os.sysconf("SC_CLK_TCK")
    finally:
        child.kill()
        child.wait()
