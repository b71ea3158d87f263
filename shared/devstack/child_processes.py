"""Servers and services a launcher (`make run`, a test session) starts must not outlive it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def _load_libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, in the parent: a child that dropped to another user may not read Python's own files.
_LIBC = _load_libc()
PR_SET_PDEATHSIG = 1


def die_with_launcher() -> Callable[[], None]:
    """A preexec_fn for Popen: the child gets SIGTERM when this process dies, even by SIGKILL
    (Linux), so a crashed launcher never leaves servers behind. A launcher that died between the
    fork and the request (the child was already handed to another parent, and no signal will come)
    is caught too: the child exits before it starts."""
    launcher = os.getpid()

    def arm() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != launcher:
                os._exit(1)

    return arm
