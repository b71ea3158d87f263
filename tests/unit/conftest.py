import pytest

from shared.images import ImageWorkerPool


@pytest.fixture(scope="module")
async def document_pool():
    """The image worker pool with the production defaults (10 s, 1 GiB a worker): documents are
    disarmed in its killable workers."""
    async with ImageWorkerPool(workers=2, timeout_seconds=10.0, memory_bytes=1024 * 1024 * 1024) as pool:
        yield pool
