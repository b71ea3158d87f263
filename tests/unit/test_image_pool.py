"""ImageWorkerPool: hard time and memory limits per task, and the pool keeps serving."""

import asyncio
import os
import signal
from pathlib import Path

import pytest

from shared.images import ImageLimits, ImageRejected, ImageWorkerPool, PoolClosed, sanitize_image
from shared.settings import Settings
from tests import imagecorpus as corpus
from tests.imagecorpus import (
    die_abruptly,
    fail_plainly,
    finish_when_told,
    hang_after_touching,
    hang_forever,
    hog_memory,
    worker_pid,
)

MEMORY_LIMIT = 768 * 1024 * 1024


@pytest.fixture
async def pool():
    # The cut-off tests wait for this limit; a small photo must fit in it on a loaded 2-core machine
    # (2 s did not, with a dozen test sessions sharing the cores).
    async with ImageWorkerPool(workers=2, timeout_seconds=8.0, memory_bytes=MEMORY_LIMIT) as started:
        yield started


async def running_in_a_worker(
    pool: ImageWorkerPool, marker: Path, fn=hang_after_touching, *args: str
) -> tuple[asyncio.Future, int]:
    """Start a call (by default one that hangs) that touches `marker`; return it once it is really
    running in a worker, with that worker's pid."""
    call = asyncio.ensure_future(pool.run(fn, str(marker), *args))
    while not marker.exists():  # an observable state, not a guess at how long starting takes
        assert not call.done(), call
        await asyncio.sleep(0.01)
    return call, int(marker.read_text())


async def worker_pids(pool: ImageWorkerPool) -> set[int]:
    # Idle workers are taken in FIFO order, so 2 x size sequential calls visit each of them.
    return {await pool.run(worker_pid) for _ in range(2 * pool.size)}


async def sanitize_small_photo(pool: ImageWorkerPool):
    data = corpus.to_jpeg(corpus.photo(640, 480))
    return await pool.run(sanitize_image, data, "image/jpeg", ImageLimits(), 400)


async def test_runs_image_work_in_worker_processes(pool):
    result = await sanitize_small_photo(pool)
    assert (result.width, result.height) == (400, 300)
    assert await pool.run(worker_pid) != os.getpid()


async def test_rejections_from_the_worker_keep_their_reason(pool):
    with pytest.raises(ImageRejected) as caught:
        await pool.run(sanitize_image, corpus.truncated_jpeg(), "image/jpeg", ImageLimits(), None)
    assert caught.value.reason == "corrupt_image"


async def test_a_hanging_task_is_cut_off_and_its_worker_replaced(pool):
    pids_before = await worker_pids(pool)

    with pytest.raises(ImageRejected) as caught:
        await pool.run(hang_forever)

    assert caught.value.reason == "processing_failed"
    assert "time limit" in caught.value.detail
    assert (await sanitize_small_photo(pool)).width == 400
    pids_after = await worker_pids(pool)
    assert len(pids_before - pids_after) == 1  # exactly the stuck worker was replaced


async def test_a_jpeg_with_thousands_of_progressive_scans_is_cut_off(pool):
    # The time limit is the backstop behind the scan count (tests/unit/test_jpeg_scans.py): with the
    # count switched off, the decode of the bomb still cannot hold a worker for long.
    bomb = corpus.progressive_scan_bomb()
    with pytest.raises(ImageRejected) as caught:
        await pool.run(sanitize_image, bomb, "image/jpeg", ImageLimits(max_jpeg_scans=10**9), 800)
    assert caught.value.reason == "processing_failed"
    assert (await sanitize_small_photo(pool)).width == 400


async def test_other_files_are_served_while_one_task_hangs(tmp_path):
    # A time limit far beyond the test: had the photos waited for the hung worker, they
    # could only have been served after it was cut off, and `hanging` would be done.
    async with ImageWorkerPool(workers=2, timeout_seconds=20.0, memory_bytes=MEMORY_LIMIT) as pool:
        hanging, _ = await running_in_a_worker(pool, tmp_path / "hanging")

        results = [await sanitize_small_photo(pool) for _ in range(3)]

        assert [r.width for r in results] == [400, 400, 400]
        assert not hanging.done()  # served by the other worker while the hang was still going on
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging


async def test_a_memory_hog_is_rejected_and_its_worker_replaced(pool):
    pids_before = await worker_pids(pool)

    with pytest.raises(ImageRejected) as caught:
        await pool.run(hog_memory, 4 * MEMORY_LIMIT)

    assert caught.value.reason == "image_too_large"
    assert (await sanitize_small_photo(pool)).width == 400
    pids_after = await worker_pids(pool)
    assert len(pids_after) == pool.size
    assert len(pids_before - pids_after) == 1  # the worker that hit its memory limit was replaced


async def test_a_worker_that_dies_is_replaced(pool):
    with pytest.raises(ImageRejected) as caught:
        await pool.run(die_abruptly)
    assert caught.value.reason == "processing_failed"
    assert (await sanitize_small_photo(pool)).width == 400


async def test_other_exceptions_become_processing_failed(pool):
    with pytest.raises(ImageRejected) as caught:
        await pool.run(fail_plainly)
    assert caught.value.reason == "processing_failed" and "KeyError" in caught.value.detail


async def test_a_cancelled_call_does_not_leave_a_stuck_worker_behind(tmp_path):
    async with ImageWorkerPool(workers=1, timeout_seconds=20.0, memory_bytes=MEMORY_LIMIT) as pool:
        stuck, stuck_pid = await running_in_a_worker(pool, tmp_path / "stuck")
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert await pool.run(worker_pid) != stuck_pid  # the only worker was replaced, not reused mid-task
        assert (await sanitize_small_photo(pool)).width == 400


def test_sized_from_settings():
    settings = Settings(image_workers=3, decode_timeout_seconds=4.0, decode_memory_bytes=2**29)
    pool = ImageWorkerPool.from_settings(settings)
    assert (pool.size, pool.timeout_seconds, pool.memory_bytes) == (3, 4.0, 2**29)
    assert ImageWorkerPool.from_settings(Settings(image_workers=0)).size == os.cpu_count()


async def test_a_stop_signal_does_not_interrupt_a_decode_in_flight(pool, tmp_path):
    """SIGTERM or SIGINT to a service's whole process group reaches its workers too: the decode in
    flight must finish (the service stops its workers after its record), not die as processing_failed."""
    marker, go = tmp_path / "decoding", tmp_path / "go"
    call, pid = await running_in_a_worker(pool, marker, finish_when_told, str(go))

    for sig in (signal.SIGTERM, signal.SIGINT):
        os.kill(pid, sig)
    go.touch()

    assert await call == "finished"


async def test_a_call_cut_off_by_closing_the_pool_is_no_rejection(tmp_path):
    """The service stops its workers after its record in flight, or after a wait: a decode cut off
    that way says nothing about the image, so the record is redone after the restart."""
    pool = await ImageWorkerPool(workers=1, timeout_seconds=20.0, memory_bytes=MEMORY_LIMIT).start()
    call, _ = await running_in_a_worker(pool, tmp_path / "decoding", finish_when_told, str(tmp_path / "never"))

    await pool.close()

    with pytest.raises(PoolClosed):
        await call
