"""AsyncSmsKit end to end under asyncio, against the Kolmeya simulator under a real uvicorn:
one send, a bulk send, the gateway's callbacks received by an asyncio web app in the kit's own
event loop, an ambiguous send reconciled, and sends gathered while the event loop stays free.

Each test runs its scenario with ``asyncio.run`` (no pytest plugin needed). The kit's sends go
through the provider's asynchronous Kolmeya client: its synchronous client is given a transport
that fails every request, so a request on the wrong path would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Tuple, TypeVar

import httpx
import pytest

from smskit import AsyncSmsKit, State
from smskit.config import Settings
from smskit.errors import InvalidPhoneError
from smskit.models import Direction
from smskit.webhooks import WebhookRequest
from smskit.webhooks.request import parse_query
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

SimServer = Tuple[KolmeyaSimulator, str]
SECRET = "async-webhook-secret"
TOKEN = "sim-async-token"
T = TypeVar("T")


@pytest.fixture
def kolmeya_sim_config() -> SimulatorConfig:
    """Every message ends delivered (a callback is sent for it)."""
    return SimulatorConfig(token=TOKEN, seed=1, outcomes={3: 1.0})


class NoSyncRequests(httpx.BaseTransport):
    """The synchronous client's transport: any request is a test failure."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the synchronous Kolmeya client was used: {request.url}")


def make_kit(sim: SimServer, tmp_path: Path, **values: Any) -> AsyncSmsKit:
    """An async kit on a SQLite file, sending through the simulator's async client."""
    _, base = sim
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=TOKEN, database_url=f"sqlite:///{tmp_path / 'a.db'}",
                             **values)
    provider = KolmeyaProvider.from_settings(settings,
                                             http=httpx.Client(transport=NoSyncRequests()))
    return AsyncSmsKit(settings, provider=provider)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


def phones(n: int, start: int = 0) -> List[str]:
    return [f"+55119{20_000_000 + start + i:08d}" for i in range(n)]


def test_send_one(kolmeya_sim: SimServer, tmp_path: Path) -> None:
    simulator, _ = kolmeya_sim

    async def scenario() -> None:
        async with make_kit(kolmeya_sim, tmp_path) as kit:
            outcome = await kit.send("(11) 98765-4321", "Olá {{ nome }}!",
                                     variables={"nome": "Ana"})
            assert outcome.state is State.SENT
            message = await kit.get(outcome.message_id or "")
            assert message is not None and message.state is State.SENT
            (sim_message,) = simulator.messages.values()
            assert (sim_message.body, sim_message.reference) == ("Olá Ana!", message.id)
            assert message.provider_message_id == sim_message.id
            assert isinstance(kit.provider(), KolmeyaProvider)
            assert kit.provider().async_client is not None  # type: ignore[attr-defined]
            with pytest.raises(InvalidPhoneError):
                await kit.send("(11) 3333-444", "Oi")

    run(scenario)


def test_a_bad_number_opens_nothing(kolmeya_sim: SimServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        kit = make_kit(kolmeya_sim, tmp_path)
        with pytest.raises(InvalidPhoneError):
            await kit.send("123", "Oi")
        assert not kit.has_store and not (tmp_path / "a.db").exists()
        await kit.close()

    run(scenario)


def test_send_many(kolmeya_sim: SimServer, tmp_path: Path) -> None:
    simulator, _ = kolmeya_sim
    rows = [{"phone": p, "nome": f"Cliente {i}"} for i, p in enumerate(phones(250))]
    rows.insert(7, {"phone": "not a phone", "nome": "X"})

    async def recipients() -> AsyncIterator[Dict[str, str]]:
        for row in rows:
            yield row

    async def scenario() -> None:
        seen: List[Any] = []

        async def on_outcome(outcome: Any) -> None:
            seen.append(outcome)

        async with make_kit(kolmeya_sim, tmp_path) as kit:
            summary = await kit.send_many(recipients(), "Olá {{ nome }}", chunk_size=100,
                                          idempotency_prefix="bulk-1", on_outcome=on_outcome)
            assert (summary.total, summary.sent, summary.rejected) == (251, 250, 1)
            assert [o.index for o in seen] == list(range(251))
            again = await kit.send_many(rows, "Olá {{ nome }}", idempotency_prefix="bulk-1")
            assert (again.duplicates, again.sent) == (251, 0)  # a plain iterable, re-run
        assert len(simulator.messages) == 250
        assert max(simulator.accepted_references().values()) == 1

    run(scenario)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn in the running event loop (the kit's), on loopback."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def receiver(kits: Dict[str, AsyncSmsKit]) -> Any:
    """An asyncio web app that hands every callback to ``kits["kit"]``: the whole receiver
    of a FastAPI or Starlette application."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def webhook(request: Request) -> JSONResponse:
        answer = await kits["kit"].receive_webhook(WebhookRequest(
            provider=request.path_params["provider"], kind=request.path_params["kind"],
            headers=request.headers.items(), query=parse_query(request.url.query),
            body=await request.body(), url=str(request.url),
            client_host=request.client.host if request.client else None))
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    return Starlette(routes=[Route("/webhooks/{provider}/{kind}", webhook, methods=["POST"])])


def test_the_gateways_callbacks_are_applied(kolmeya_sim: SimServer, tmp_path: Path) -> None:
    simulator, _ = kolmeya_sim

    async def scenario() -> None:
        kits: Dict[str, AsyncSmsKit] = {}
        async with served(receiver(kits)) as base_url:
            kit = kits["kit"] = make_kit(kolmeya_sim, tmp_path, public_url=base_url,
                                         webhook_secret=SECRET)
            async with kit:
                outcome = await kit.send("(11) 98765-4321", "Oi")
                loop = asyncio.get_running_loop()
                # The simulator posts its callbacks from a thread; the kit's loop serves them.
                await loop.run_in_executor(None, simulator.advance)
                message = await kit.get(outcome.message_id or "")
                assert message is not None and message.state is State.DELIVERED
                simulator.add_reply("11987654321", "SAIR")
                await loop.run_in_executor(None, simulator.deliver_callbacks)
                assert await kit.to_thread(kit.store.is_blacklisted, "+5511987654321")
                replies = [m for m in await kit.to_thread(kit.store.list_messages)
                           if m.direction is Direction.INBOUND]
                assert [m.body for m in replies] == ["SAIR"]
                report = await kit.handle_webhook(  # a trusted callback, without the gate
                    "kolmeya", "status", {"content-type": "application/json"},
                    b'{"id": "x", "reference": "nobody", "status_code": 3}')
                assert [s.message for s in report.statuses] == [None]  # recorded as unknown
        posted = simulator.callbacks_sent
        assert [c["status_code"] for c in posted] == [200, 200]

    run(scenario)


def test_an_ambiguous_send_is_reconciled(kolmeya_sim: SimServer, tmp_path: Path) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(timeout_after_accept_rate=1.0, hang_seconds=5,
                        fault_endpoints=["sms/store"])

    async def scenario() -> None:
        async with make_kit(kolmeya_sim, tmp_path, kolmeya_timeout="1") as kit:
            outcome = await kit.send("(11) 98765-4321", "Oi")
            assert outcome.state is State.OUTGOING  # Kolmeya took it; the answer never came
            simulator.configure(timeout_after_accept_rate=0.0)
            assert (await kit.dispatch()).batches == 0  # nothing is sent again blindly
            report = await kit.reconcile()
            assert (report.batches, report.confirmed, report.resendable) == (1, 1, 0)
            message = await kit.get(outcome.message_id or "")
            assert message is not None and message.state is State.SENT
        assert simulator.accepted_references()[outcome.message_id] == 1

    run(scenario)


def test_gathered_sends_leave_the_event_loop_free(kolmeya_sim: SimServer,
                                                  tmp_path: Path) -> None:
    simulator, _ = kolmeya_sim
    simulator.configure(slow_seconds=0.3)  # every answer of the gateway takes a while

    async def scenario() -> None:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        async with make_kit(kolmeya_sim, tmp_path) as kit:
            clock = asyncio.ensure_future(ticker())
            started = time.monotonic()
            outcomes = await asyncio.gather(*(kit.send(p, f"Oi {i}")
                                              for i, p in enumerate(phones(12))))
            elapsed = time.monotonic() - started
            done.set()
            await clock
            assert {o.state for o in outcomes} == {State.SENT}
            assert len({o.message_id for o in outcomes}) == 12
            messages = [await kit.get(o.message_id or "") for o in outcomes]
            assert len({m.provider_message_id for m in messages if m}) == 12
        # The loop kept running while the sends waited on the gateway and the store.
        assert ticks >= elapsed / 0.01 / 4, (ticks, elapsed)
        assert max(simulator.accepted_references().values()) == 1
        assert len(simulator.messages) == 12

    run(scenario)



def test_send_many_stores_the_next_chunk_while_a_request_is_out(kolmeya_sim: SimServer,
                                                                 tmp_path: Path) -> None:
    # As SmsKit.send_many: each chunk's batch is opened by its insert, and the next chunk is
    # stored while the gateway has not answered yet.
    simulator, _ = kolmeya_sim
    simulator.configure(slow_seconds=0.5)
    events: List[str] = []

    async def scenario() -> None:
        async with make_kit(kolmeya_sim, tmp_path) as kit:
            await kit.send(phones(1, start=900)[0], "aquecimento")
            store, provider = kit.store, kit.provider()
            add, asend = store.add_messages_claimed, provider.asend_batch

            def adding(messages: Any, claim: Any) -> Any:
                events.append("insert")
                return add(messages, claim)

            async def sending(messages: Any, *, batch_id: str) -> Any:
                results = await asend(messages, batch_id=batch_id)
                events.append("answered")
                return results

            store.add_messages_claimed = adding  # type: ignore[method-assign]
            provider.asend_batch = sending  # type: ignore[method-assign]
            summary = await kit.send_many(phones(600), "Olá", chunk_size=200)
            assert (summary.total, summary.sent, summary.queued) == (600, 600, 0)
            batches = {m.batch_id for m in await kit.to_thread(
                store.list_messages, limit=1000) if m.phone in set(phones(600))}
            assert len(batches) == 3

    run(scenario)
    assert events == ["insert", "insert", "answered", "insert", "answered", "answered"]
    assert len(simulator.messages) == 601
    assert max(simulator.accepted_references().values()) == 1
