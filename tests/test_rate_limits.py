"""A provider's rate (``SMSKIT_<PROVIDER>_MAX_PER_SECOND``) holds across processes: the time
line of its slots is kept in the store, each request reserving its slot atomically; a store
without one paces each process alone. Kolmeya's ``X-RateLimit-*`` headers slow the client
down before a 429 comes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple

import httpx
import pytest
import respx

from smskit.config import Settings
from smskit.errors import RateLimitedError
from smskit.kit import SmsKit
from smskit.models import Message, SendResult
from smskit.plugins import Plugins
from smskit.providers.loopback import LoopbackProvider
from smskit.routing.limits import SharedRateLimiter
from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit_kolmeya import wire
from smskit_kolmeya.client import KolmeyaClient

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL"))])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tuple[Any, Any]]:
    """Two store objects over one database: what two processes have."""
    if request.param == "memory":
        shared = MemoryStore()
        yield shared, shared
        return
    url = f"sqlite:///{tmp_path / 'smskit.db'}" if request.param == "sqlite" else str(PG_URL)
    first, second = SqlStore(url), SqlStore(url)
    if request.param == "postgresql":
        with first._engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM kv_state WHERE key LIKE 'rate:%%'")
    yield first, second
    first.close()
    second.close()


def test_two_processes_share_one_rate(two_stores: Tuple[Store, Store]) -> None:
    waits: List[Tuple[str, float]] = []
    now = [1_000.0]

    def limiter(name: str, store: Store) -> SharedRateLimiter:
        return SharedRateLimiter(10, lambda: store, "rate:kolmeya", clock=lambda: now[0],
                                 sleep=lambda s: waits.append((name, s)))

    a, b = limiter("a", two_stores[0]), limiter("b", two_stores[1])
    assert a.acquire(10) == 0.0  # the first second's worth goes at once
    assert b.acquire(10) == pytest.approx(1.0)  # the other process waits for its slot
    assert a.acquire(5) == pytest.approx(2.0)
    now[0] += 10  # idle for a while: the time line does not run ahead
    assert b.acquire(10) == 0.0
    assert waits == [("b", pytest.approx(1.0)), ("a", pytest.approx(2.0))]


class Plain(MemoryStore):
    """A store without the shared time line (as a third-party store may be)."""

    reserve_slot = None  # type: ignore[assignment]


def test_a_store_without_a_time_line_paces_each_process(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = SharedRateLimiter(2, lambda: object(), "rate:x", clock=lambda: now[0],
                                sleep=lambda s: None)
    assert limiter.acquire(2) == 0.0 and limiter.acquire(2) == pytest.approx(1.0)
    assert "paced per process" in caplog.text


class Recorder(LoopbackProvider):
    """A gateway recording when each request arrived (shared by two kits: one gateway)."""

    def __init__(self) -> None:
        super().__init__(max_batch=100)
        self.times: List[float] = []
        self.lock = threading.Lock()

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        with self.lock:
            self.times.extend([time.monotonic()] * len(messages))
        return super().send_batch(messages, batch_id=batch_id)


def test_two_workers_on_one_database_send_at_the_rate_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'smskit.db'}"
    gateway = Recorder()
    settings = Settings(provider="loopback", database_url=url,
                        values={"loopback_max_per_second": "20"})
    kits = [SmsKit(settings, store=SqlStore(url), provider=gateway,
                   plugins=Plugins(settings, entry_points=False)) for _ in range(2)]
    for n, kit in enumerate(kits):
        kit.send_many([f"+55119876{n}{i:04d}" for i in range(20)], "Oi", dispatch=False,
                      provider="loopback")
    started = time.monotonic()
    threads = [threading.Thread(target=kit.dispatch) for kit in kits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(gateway.times) == 40
    # 40 messages at 20 a second: the first second's worth at once, the rest paced.
    assert max(gateway.times) - started >= 0.9
    for kit in kits:
        kit.close()


# -- Kolmeya's X-RateLimit-* headers --------------------------------------------------------------
T0 = 1_800_000_000.0  # an epoch time: Laravel's X-RateLimit-Reset


def test_rate_budget_spreads_what_is_left_until_the_reset() -> None:
    plenty = wire.RateBudget.from_headers(
        {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "400",
         "X-RateLimit-Reset": str(int(T0 + 60))}, now=T0)
    assert plenty is not None and plenty.wait(T0) == 0.0
    low = wire.RateBudget.from_headers(
        {"x-ratelimit-limit": "500", "x-ratelimit-remaining": "9", "x-ratelimit-reset": "60"},
        now=T0)
    assert low is not None and low.reset_at == T0 + 60  # a delta in seconds
    assert low.wait(T0) == pytest.approx(60 / 10)
    empty = wire.RateBudget.from_headers(
        {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0",
         "X-RateLimit-Reset": str(int(T0 + 30))}, now=T0)
    assert empty is not None and empty.wait(T0 + 10) == pytest.approx(20.0)
    assert empty.wait(T0 + 31) == 0.0  # the window is over
    no_reset = wire.RateBudget.from_headers({"X-RateLimit-Remaining": "0"}, now=T0)
    assert no_reset is not None and no_reset.wait(T0) == 0.0  # a 429 will say how long
    assert wire.RateBudget.from_headers({}, now=T0) is None


def test_the_client_slows_down_before_a_429() -> None:
    sleeps: List[float] = []
    now = [T0]
    answers = iter([("2", 30), ("1", 30), ("0", 100)])

    def balance(request: httpx.Request) -> httpx.Response:
        remaining, reset = next(answers)
        return httpx.Response(200, json={"balance": "10,00"}, headers={
            "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": str(int(T0 + reset))})

    with respx.mock(base_url="https://kolmeya.test/api/v1") as router:
        route = router.post("/sms/balance").mock(side_effect=balance)
        client = KolmeyaClient("t", base_url="https://kolmeya.test/api/v1",
                               sleep=sleeps.append, clock=lambda: now[0], max_retry_wait=15)
        client.balance()
        assert sleeps == []
        client.balance()  # 2 of 60 left, 30 s to the reset: spread, 10 s apart
        assert sleeps == [pytest.approx(10.0)]
        now[0] += 10
        client.balance()  # 1 left, 20 s to go: 10 s
        assert sleeps[-1] == pytest.approx(10.0)
        now[0] += 10
        with pytest.raises(RateLimitedError) as caught:  # 0 left, 80 s: past max_retry_wait
            client.balance()
        assert caught.value.retry_after == pytest.approx(80.0)
        assert route.call_count == 3  # the fourth request was never made
        client.close()


def test_the_async_client_slows_down_too() -> None:
    import asyncio

    from smskit_kolmeya.client import AsyncKolmeyaClient

    sleeps: List[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run() -> None:
        with respx.mock(base_url="https://kolmeya.test/api/v1") as router:
            router.post("/sms/balance").respond(200, json={"balance": "1,00"}, headers={
                "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(T0 + 12))})
            client = AsyncKolmeyaClient("t", base_url="https://kolmeya.test/api/v1",
                                        sleep=sleep, clock=lambda: T0)
            await client.balance()
            await client.balance()
            await client.aclose()

    asyncio.run(run())
    assert sleeps == [pytest.approx(12.0)]


def test_against_the_simulator_s_rate_limit_no_request_is_refused(
        kolmeya_sim: Tuple[Any, str]) -> None:
    simulator, base = kolmeya_sim
    simulator.configure(rate_limit=20, rate_window=2)
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token, kolmeya_max_attempts="1")
    from smskit_kolmeya.provider import KolmeyaProvider

    with SmsKit(settings, store=MemoryStore(),
                provider=KolmeyaProvider.from_settings(settings)) as kit:
        kit.provider().max_batch = 1  # one request per message: 30 requests, 20 per 2 s
        started = time.monotonic()
        summary = kit.send_many([f"+55119876{i:05d}" for i in range(30)], "Oi")
    assert summary.sent == 30
    assert simulator.rate_refused == 0  # slowed down before the limit, never refused
    assert time.monotonic() - started >= 1.0
