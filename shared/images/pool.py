"""A small pool of persistent worker processes for CPU-bound image work, with hard limits.

Why not concurrent.futures.ProcessPoolExecutor: it cannot kill one worker, and a
decoder stuck in C code (a JPEG with thousands of progressive scans, libjpeg-turbo
#284) can only be stopped by killing its process. Here each worker has its own
Pipe; a call waits on that pipe in a helper thread (so the event loop never
blocks) for at most `timeout_seconds`, after which the worker is SIGKILLed and
replaced. Each worker caps its own address space (RLIMIT_AS), so a decode that
asks for too much memory fails with MemoryError in that worker only.

Workers come from the 'forkserver' start method: they are forked from a clean
server process, so they inherit neither the service's sockets (Kafka, HTTP,
storage) nor its threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, cast

from shared.contract.rejections import Rejected

from .errors import ImageRejected

if TYPE_CHECKING:  # worker processes import this module: they need no settings model
    from shared.settings import Settings

log = logging.getLogger(__name__)

# Imported once in the fork server, so a new or replacement worker starts warm.
_PRELOAD = ["shared.images", "shared.documents"]


def _worker_main(conn: Connection, memory_bytes: int | None) -> None:
    """Worker loop: receive (fn, args), send back ("ok", result) | ("error", exc) | ("memory", detail)."""
    # The parent decides when workers stop: a SIGTERM or Ctrl-C sent to the service's whole process
    # group must not kill a decode in flight (its photo would be rejected as processing_failed).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if task is None:
            return
        fn, args = task
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            reply = ("memory", f"worker memory limit of {memory_bytes} bytes exceeded")
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("error", exc)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", "result too large for the worker memory limit"))
        except Exception as exc:  # e.g. an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


# The contexts get_context(start_method) can return here, each with a Process class.
_ProcessContext = (
    multiprocessing.context.SpawnContext
    | multiprocessing.context.ForkServerContext
    | multiprocessing.context.ForkContext
)


class _Worker:
    def __init__(self, context: _ProcessContext, memory_bytes: int | None) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, memory_bytes), name="image-worker", daemon=True
        )
        self.process.start()
        child_conn.close()

    def call(self, fn: Callable[..., Any], args: tuple, timeout: float) -> tuple[str, Any]:
        """Runs in a helper thread. Returns the worker's reply, ("timeout", None) or ("died", None)."""
        try:
            self.conn.send((fn, args))
            if not self.conn.poll(timeout):
                return ("timeout", None)
            return self.conn.recv()
        except (EOFError, OSError):
            return ("died", None)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(2)
        self.kill()


class PoolClosed(RuntimeError):
    """The pool closed (the service is stopping) while a call ran: no verdict on the image, so the
    record must be handed back uncommitted and redone, never rejected."""


class ImageWorkerPool:
    """`await pool.run(fn, *args)` runs a picklable module-level function in a worker process.

    Failures of the worker become ImageRejected: a call over `timeout_seconds` is
    processing_failed (worker killed and replaced), a MemoryError is image_too_large
    (worker replaced), a worker that dies (segfault, OOM killer) is processing_failed.
    An exception raised by `fn` itself is re-raised as is when it is a Rejected (an image's or a
    document's domain error), else wrapped into ImageRejected("processing_failed"). Other calls keep being served.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_seconds: float = 10.0,
        memory_bytes: int | None = 1024 * 1024 * 1024,
        start_method: str = "forkserver",
    ) -> None:
        self.size = workers or len(os.sched_getaffinity(0)) or 1  # the CPUs this process may use (containers)
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self._context = cast(_ProcessContext, multiprocessing.get_context(start_method))
        if start_method == "forkserver":
            self._context.set_forkserver_preload(_PRELOAD)
        self._idle: asyncio.Queue[_Worker] | None = None
        self._busy: set[_Worker] = set()
        self._threads: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageWorkerPool:
        return cls(
            workers=settings.image_workers or None,
            timeout_seconds=settings.decode_timeout_seconds,
            memory_bytes=settings.decode_memory_bytes,
        )

    async def start(self) -> ImageWorkerPool:
        loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="image-pool")
        workers = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._new_worker) for _ in range(self.size))
        )
        self._idle = asyncio.Queue()
        for worker in workers:
            self._idle.put_nowait(worker)
        return self

    async def close(self) -> None:
        if self._idle is None:
            return
        idle, self._idle = self._idle, None
        loop = asyncio.get_running_loop()
        stopping = []
        while not idle.empty():
            stopping.append(loop.run_in_executor(self._threads, idle.get_nowait().stop))
        for worker in list(self._busy):
            worker.kill()  # unblocks the helper thread waiting on its pipe
        await asyncio.gather(*stopping)
        assert self._threads is not None
        self._threads.shutdown(wait=True)

    async def __aenter__(self) -> ImageWorkerPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._idle is None:
            raise RuntimeError("ImageWorkerPool is not started")
        idle = self._idle
        worker = await idle.get()
        if not worker.process.is_alive():  # died while idle: not this call's fault
            worker = self._replace(worker)
        self._busy.add(worker)
        healthy = False
        try:
            status, value = await asyncio.get_running_loop().run_in_executor(
                self._threads, worker.call, fn, args, self.timeout_seconds
            )
            healthy = status in ("ok", "error")
        finally:
            # A cancelled call leaves the worker mid-task: it cannot be trusted either.
            self._busy.discard(worker)
            if self._idle is not idle:  # the pool closed meanwhile
                worker.kill()
            else:
                if not healthy:
                    worker = self._replace(worker)
                idle.put_nowait(worker)
        if self._idle is not idle and status != "ok":
            raise PoolClosed("the image worker pool closed during the call")
        return self._outcome(status, value)

    def _outcome(self, status: str, value: Any) -> Any:
        if status == "ok":
            return value
        if status == "timeout":
            raise ImageRejected("processing_failed", f"decode time limit of {self.timeout_seconds:g} s exceeded")
        if status == "memory":
            raise ImageRejected("image_too_large", value)
        if status == "died":
            raise ImageRejected("processing_failed", "image worker died during decode")
        if isinstance(value, Rejected):
            raise value
        raise ImageRejected("processing_failed", f"{type(value).__name__}: {value}") from value

    def _new_worker(self) -> _Worker:
        return _Worker(self._context, self.memory_bytes)

    def _replace(self, worker: _Worker) -> _Worker:
        # Synchronous on purpose (a kill plus a fork from the warm fork server: milliseconds),
        # so it also runs in the `finally` of a cancelled call.
        log.warning("replacing image worker pid %s", worker.process.pid)
        worker.kill()
        return self._new_worker()
