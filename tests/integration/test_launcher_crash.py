"""A launcher (`make run`, a test session) killed by SIGKILL leaves no server running: every child
it started, clamd included, gets SIGTERM from the kernel when it dies (shared.devstack.child_processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.support import wait_until

LAUNCHER = textwrap.dedent("""
    import os, signal, socket, sys
    from pathlib import Path
    from shared.devstack.embedded import EmbeddedStack
    from shared.devstack.embedded_clamd import start_clamd, write_test_signatures
    data = Path(sys.argv[1])
    stack = EmbeddedStack(data, {})
    sleeper = stack.spawn("sleeper", ["sleep", "300"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clamd = start_clamd(data / "clamd", write_test_signatures(data / "db").parent, port)
    print(sleeper.pid, clamd.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def gone(pid: int) -> bool:
    """No such process, or one that exited and waits to be reaped (a zombie runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_launcher_killed_by_sigkill_leaves_no_server_running(tmp_path):
    done = subprocess.run([sys.executable, "-c", LAUNCHER, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    children = [int(pid) for pid in done.stdout.split()]
    assert len(children) == 2, done.stdout
    try:
        wait_until(
            lambda: all(gone(pid) for pid in children), timeout=30, what="the launcher's children to stop after it died"
        )
    finally:
        for pid in children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
