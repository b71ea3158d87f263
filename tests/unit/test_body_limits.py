"""Request bodies: a cap on every body, enforced while it streams, 401 before 413, and a
budget of body bytes in flight that makes a burst wait in line (or answers 503 with Retry-After)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.runtime.httpapi import ApiError, ByteBudget, install_body_limit, install_error_handlers

TOKEN = {"Authorization": "Bearer good"}


def service(budget: ByteBudget | None = None, gate: asyncio.Event | None = None) -> tuple[FastAPI, list]:
    """A service shaped like ours: every handler authenticates before it reads the body."""
    app = FastAPI()
    install_error_handlers(app)
    install_body_limit(app, 1000, {("POST", "/v1/uploads/{name}"): 10_000}, budget)
    read_chunks: list[int] = []

    def authenticate(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer good":
            raise ApiError(401, "unauthenticated", "no token")

    @app.put("/v1/settings")
    async def put_settings(request: Request):
        authenticate(request)
        return {"bytes": len(await request.body())}

    @app.post("/v1/uploads/{name}")
    async def upload(name: str, request: Request):
        authenticate(request)
        size = 0
        async for chunk in request.stream():
            read_chunks.append(len(chunk))
            size += len(chunk)
        if gate is not None:
            await gate.wait()  # the body is held (booked) until the response
        return {"name": name, "bytes": size}

    @app.get("/v1/things")
    async def things(request: Request):
        authenticate(request)
        return {"things": []}

    return app, read_chunks


def call(app: FastAPI, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(go())


def chunks(total: int, size: int = 512):
    async def gen():
        for start in range(0, total, size):
            yield b"x" * min(size, total - start)

    return gen()


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_a_body_under_its_cap_is_read_whole():
    app, _ = service()
    assert call(app, "PUT", "/v1/settings", content=b"x" * 1000, headers=TOKEN).json() == {"bytes": 1000}
    assert call(app, "POST", "/v1/uploads/a", content=b"x" * 10_000, headers=TOKEN).json()["bytes"] == 10_000


def test_a_declared_length_over_the_cap_is_413_before_a_byte_is_read():
    app, read_chunks = service()
    r = call(app, "POST", "/v1/uploads/a", content=b"x" * 10_001, headers=TOKEN)
    assert error(r) == (413, "body_too_large")
    assert read_chunks == []
    assert error(call(app, "PUT", "/v1/settings", content=b"x" * 1001, headers=TOKEN)) == (413, "body_too_large")


def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_cap():
    app, read_chunks = service()
    r = call(app, "POST", "/v1/uploads/a", content=chunks(1_000_000), headers=TOKEN)  # chunked: no length
    assert error(r) == (413, "body_too_large")
    assert "larger than 10000 bytes" in r.json()["error"]["message"]
    assert sum(read_chunks) <= 10_000  # the handler never saw more than the cap
    assert error(call(app, "PUT", "/v1/settings", content=chunks(5000), headers=TOKEN)) == (413, "body_too_large")


@pytest.mark.parametrize("content", [b"x" * 50_000, None])
def test_without_a_token_the_answer_is_401_whatever_the_size(content):
    app, _ = service()
    body = content if content is not None else chunks(50_000)
    for method, path in (("PUT", "/v1/settings"), ("POST", "/v1/uploads/a")):
        assert error(call(app, method, path, content=body)) == (401, "unauthenticated")
        body = content if content is not None else chunks(50_000)


def test_requests_without_a_body_pass_untouched():
    app, _ = service(ByteBudget(0, wait_seconds=0))  # not even an empty budget stops them
    assert call(app, "GET", "/v1/things", headers=TOKEN).json() == {"things": []}


def test_a_full_budget_answers_503_with_retry_after_and_frees_on_response():
    async def scenario():
        gate = asyncio.Event()
        budget = ByteBudget(12_000, wait_seconds=0)
        app, _ = service(budget, gate)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            first = asyncio.create_task(http.post("/v1/uploads/a", content=b"x" * 8000, headers=TOKEN))
            while budget.available == 12_000:  # until the first body is being read
                await asyncio.sleep(0)
            assert budget.available == 4000
            refused = await http.post("/v1/uploads/b", content=b"x" * 8000, headers=TOKEN)
            small = await http.put("/v1/settings", content=b"x" * 900, headers=TOKEN)  # fits beside it
            gate.set()
            assert (await first).json()["bytes"] == 8000
            after = await http.post("/v1/uploads/c", content=b"x" * 8000, headers=TOKEN)
        return refused, small, after, budget.available

    refused, small, after, available = asyncio.run(scenario())
    assert error(refused) == (503, "unavailable") and refused.headers["retry-after"] == "1"
    assert small.status_code == 200
    assert after.status_code == 200
    assert available == 12_000  # every share came back


def test_a_burst_waits_in_line_and_every_body_is_read():
    async def scenario():
        gate = asyncio.Event()
        budget = ByteBudget(10_000, wait_seconds=60)
        app, _ = service(budget, gate)
        lowest = budget.available
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            uploads = [
                asyncio.create_task(http.post(f"/v1/uploads/{i}", content=b"x" * 4000, headers=TOKEN))
                for i in range(10)
            ]
            while len(budget._waiting) < 8:  # two bodies in flight (8000 bytes), eight in line
                await asyncio.sleep(0)
                lowest = min(lowest, budget.available)
            gate.set()
            answers = await asyncio.gather(*uploads)
        return answers, lowest, budget.available

    answers, lowest, available = asyncio.run(scenario())
    assert [r.status_code for r in answers] == [200] * 10
    assert lowest == 2000 and available == 10_000


def test_the_budget_serves_in_arrival_order_and_one_who_leaves_the_line_frees_it():
    async def scenario():
        budget = ByteBudget(100, wait_seconds=60)
        assert await budget.acquire(80) == 80
        big = asyncio.create_task(budget.acquire(60))
        small = asyncio.create_task(budget.acquire(10))  # would fit, but waits behind `big`
        await asyncio.sleep(0)
        waiting = not big.done() and not small.done()
        big.cancel()  # the big one gives up: the small one goes
        granted = await small
        budget.release(80)
        budget.release(granted)
        return waiting, granted, budget.available

    assert asyncio.run(scenario()) == (True, 10, 100)


def test_a_body_larger_than_the_whole_budget_takes_all_of_it_and_a_full_budget_times_out():
    async def scenario():
        budget = ByteBudget(100, wait_seconds=0)
        taken = await budget.acquire(10**9)
        with pytest.raises(TimeoutError):
            await budget.acquire(1)
        return taken, budget.available, len(budget._waiting)

    assert asyncio.run(scenario()) == (100, 0, 0)
