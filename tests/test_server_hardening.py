"""The server under hostile or careless clients: secrets and rotation, its own credentials,
rate-limited refusal logs, connection limits tested with real sockets against a real uvicorn on
127.0.0.1, cheap metrics, buffered clicks, and text PostgreSQL cannot store.

The 2,000-connection figure belongs to ``benchmarks/bench_webhooks.py``; here a few hundred
connections, and timeouts of a fraction of a second, keep the tests fast.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import httpx
import pytest

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import State
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.server.credentials import is_loopback
from smskit.server.limits import ServerLimits, raise_fd_limit
from smskit.server.metrics import RENDER_EVERY, ServerMetrics, StoreSnapshot
from smskit.store.analytics import Click, Link
from smskit.store.memory import MemoryStore
from smskit.testing.servers import serve_in_thread, start_server
from smskit.webhooks import WebhookRequest, receive
from smskit.webhooks.auth import split_query_token
from smskit.webhooks.throttle import REFUSALS, LogThrottle

SECRET = "current-Secr3t"
OLD = "old-Secr3t-1"
OLDER = "old-Secr3t-2"
STATUS = "/webhooks/loopback/status"
PHONE = "+5511987654321"
PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")


def make_settings(**values: str) -> Settings:
    values.setdefault("webhook_secret", SECRET)
    return Settings.load(environ={}, **values)


def make_kit(store: Any = None, **values: str) -> SmsKit:
    return SmsKit(make_settings(**values), store=store or MemoryStore(),
                  provider=LoopbackProvider())


def sent(kit: SmsKit) -> str:
    outcome = kit.send(PHONE, "Olá, sua fatura vence amanhã.")
    assert outcome.state is State.SENT and outcome.message_id is not None
    return outcome.message_id


def post(base: str, query: Sequence[Tuple[str, str]], message_id: str,
         headers: Optional[Dict[str, str]] = None) -> httpx.Response:
    return httpx.post(base + STATUS, params=list(query), headers=headers,
                      json={"message_id": message_id, "state": "delivered"})


# -- secrets --------------------------------------------------------------------------------------
def test_previous_secrets_keep_working_after_a_rotation() -> None:
    # a message sent before the rotation carries the old secret in its callback URL
    kit = make_kit(webhook_secrets_previous=f"{OLD}, {OLDER},")
    answers = {}
    with serve_in_thread(create_app(kit)) as base:
        for token in (SECRET, OLD, OLDER, "never-a-secret", OLD + "x"):
            answers[token] = post(base, [("token", token)], sent(kit)).status_code
    assert answers == {SECRET: 200, OLD: 200, OLDER: 200, "never-a-secret": 403,
                       OLD + "x": 403}


def test_a_previous_secret_alone_opens_nothing() -> None:
    kit = SmsKit(Settings.load(environ={}, webhook_secrets_previous=OLD), store=MemoryStore(),
                 provider=LoopbackProvider())
    with serve_in_thread(create_app(kit)) as base:
        response = post(base, [("token", OLD)], sent(kit))
    assert response.status_code == 503  # no current secret: webhooks are not configured


@pytest.mark.parametrize(("query", "headers", "status"), [
    ([("TOKEN", SECRET)], None, 200),  # a token parameter in any case is a token
    ([("ToKeN", OLD)], None, 200),
    ([("token", SECRET), ("Token", "wrong")], None, 403),  # every one must match
    ([("token", SECRET), ("TOKEN", OLD)], None, 200),  # each may be any accepted secret
    ([("Token", "wrong")], {"X-Smskit-Token": SECRET}, 403),
    ([("%54oken", "wrong")], {"X-Smskit-Token": SECRET}, 403),  # percent-encoded name
    ([("tokens", "wrong"), ("token", SECRET)], None, 200),  # another name is not a token
])
def test_every_token_parameter_in_any_case_must_match(
        query: List[Tuple[str, str]], headers: Optional[Dict[str, str]], status: int) -> None:
    kit = make_kit(webhook_secrets_previous=OLD)
    message_id = sent(kit)
    raw = "&".join(f"{name}={value}" for name, value in query)
    with serve_in_thread(create_app(kit)) as base:
        response = httpx.post(f"{base}{STATUS}?{raw}", headers=headers,
                              json={"message_id": message_id, "state": "delivered"})
    assert response.status_code == status, response.text
    delivered = kit.get(message_id)
    assert delivered is not None and (delivered.state is State.DELIVERED) == (status == 200)


def test_token_parameters_are_redacted_in_any_case() -> None:
    first, redacted = split_query_token(b"a=1&Token=s1&TOKEN=s2&%54oken=s3&token=s4&tokens=x")
    assert first == "s1"
    assert redacted == (b"a=1&Token=********&TOKEN=********&%54oken=********&token=********"
                        b"&tokens=x")


def test_no_secret_of_any_case_reaches_the_logs_or_the_provider(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: List[Any] = []

    class Recording(LoopbackProvider):
        def parse_webhook(self, request: Any) -> Any:
            seen.append(request.query)
            return super().parse_webhook(request)

    kit = SmsKit(make_settings(webhook_secrets_previous=OLD), store=MemoryStore(),
                 provider=Recording())
    message_id = sent(kit)
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.INFO)
    with serve_in_thread(create_app(kit), log_level="info") as base:
        ok = httpx.post(f"{base}{STATUS}?TOKEN={SECRET}&Token={OLD}&x=1",
                        json={"message_id": message_id, "state": "delivered"})
    assert ok.status_code == 200
    assert seen == [(("x", "1"),)]
    assert any("TOKEN=********&Token=********" in r.getMessage() for r in caplog.records
               if r.name == "smskit.server.access")
    assert SECRET not in caplog.text and OLD not in caplog.text


def test_refused_token_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    REFUSALS.reset()
    kit = make_kit()
    caplog.set_level(logging.WARNING, logger="smskit.webhooks.gate")

    def wrong(host: str) -> int:
        request = WebhookRequest(provider="loopback", kind="status", query=[("token", "bad")],
                                 headers={"content-type": "application/json"}, body=b"{}",
                                 client_host=host)
        return receive(kit, request).status

    assert {wrong("203.0.113.9") for _ in range(40)} == {403}
    assert wrong("198.51.100.4") == 403
    lines = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert lines == ["webhook refused: wrong token from 203.0.113.9",
                     "webhook refused: wrong token from 198.51.100.4"]
    REFUSALS.reset()


def test_the_throttle_reports_what_it_left_out_and_bounds_its_memory(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = LogThrottle(60.0, max_keys=2, clock=lambda: now[0])
    logger = logging.getLogger("smskit.test.throttle")
    caplog.set_level(logging.WARNING, logger=logger.name)
    written = [throttle.warning(logger, "token", "a", "refused %s", "a") for _ in range(5)]
    assert written == [True, False, False, False, False]
    now[0] = 61.0
    assert throttle.warning(logger, "token", "a", "refused %s", "a")
    assert caplog.records[-1].getMessage() == (
        "refused a (4 more like it from this address in the last 61 s, not logged)")
    # two addresses fill the memory: the others share one line per interval
    assert throttle.warning(logger, "token", "b", "refused %s", "b")
    assert throttle.warning(logger, "token", "c", "refused %s", "c")
    assert not throttle.warning(logger, "token", "d", "refused %s", "d")
    assert not throttle.warning(logger, "token", "e", "refused %s", "e")


# -- the dashboard's and /metrics' own credentials -------------------------------------------------
def test_metrics_need_their_own_token() -> None:
    kit = make_kit(metrics_token="scrape-T0ken")
    with serve_in_thread(create_app(kit, bind_host="0.0.0.0")) as base:
        bare = httpx.get(f"{base}/metrics")
        bearer = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-T0ken"})
        basic = httpx.get(f"{base}/metrics", auth=("prometheus", "scrape-T0ken"))
        webhook_secret = httpx.get(f"{base}/metrics", headers={"Authorization":
                                                               f"Bearer {SECRET}"})
        query = httpx.get(f"{base}/metrics", params={"token": "scrape-T0ken"})
    assert (bare.status_code, bearer.status_code, basic.status_code) == (401, 200, 200)
    assert (webhook_secret.status_code, query.status_code) == (401, 401)
    assert "smskit_store_up" in bearer.text


@pytest.mark.parametrize(("bind_host", "status"), [
    ("127.0.0.1", 200), ("::1", 200), ("localhost", 200), ("0.0.0.0", 503),
    ("192.0.2.10", 503), (None, 503)])
def test_metrics_without_a_token_are_open_only_on_loopback(bind_host: Optional[str],
                                                           status: int) -> None:
    kit = make_kit()
    with serve_in_thread(create_app(kit, bind_host=bind_host)) as base:
        response = httpx.get(f"{base}/metrics")
    assert response.status_code == status
    if status == 503:
        assert "SMSKIT_METRICS_TOKEN" in response.json()["detail"]


def test_a_metrics_token_equal_to_the_webhook_secret_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    kit = make_kit(metrics_token=OLD, webhook_secrets_previous=OLD)
    with caplog.at_level(logging.ERROR, logger="smskit.server.credentials"):
        app = create_app(kit, bind_host="0.0.0.0")
    assert "SMSKIT_METRICS_TOKEN is the webhook secret" in caplog.text
    with serve_in_thread(app) as base:
        response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {OLD}"})
    assert response.status_code == 503


def test_is_loopback() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost",
                                     "0.0.0.0", "::", "10.0.0.1", "", None, "example.com")] == [
        True, True, True, True, True, False, False, False, False, False, False]


# -- /metrics is cheap ---------------------------------------------------------------------------
class CountingStore(MemoryStore):
    """A memory store counting its full scans and its click writes."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0
        self.click_writes = 0
        self.click_calls = 0

    def count_by_state(self, provider: Optional[str] = None) -> Any:
        self.scans += 1
        time.sleep(0.05)  # a scan of a big table takes a while: scrapes must share it
        return super().count_by_state(provider)

    def record_clicks(self, clicks: Sequence[Click]) -> int:
        self.click_writes += 1
        return super().record_clicks(clicks)

    def record_click(self, code: str, at: Any, user_agent: Optional[str] = None) -> Any:
        self.click_calls += 1
        return super().record_click(code, at, user_agent)


def test_concurrent_scrapes_share_one_store_read() -> None:
    store = CountingStore()
    kit = make_kit(store, metrics_token="m", metrics_max_per_second="0")  # no pacing here
    app = create_app(kit)
    headers = {"Authorization": "Bearer m"}
    with serve_in_thread(app) as base:
        results: List[int] = []

        def scrape() -> None:
            with httpx.Client() as client:
                for _ in range(5):
                    results.append(client.get(f"{base}/metrics", headers=headers).status_code)

        threads = [threading.Thread(target=scrape) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [200] * 60
    assert store.scans == 1
    assert app.state.metrics.snapshot.reads == 1


def test_the_store_figures_and_the_text_are_cached_for_their_periods() -> None:
    import asyncio

    now = [100.0]
    store = CountingStore()
    kit = make_kit(store)
    snapshot = StoreSnapshot(kit, 5.0, clock=lambda: now[0])
    snapshot.current()
    snapshot.current()
    assert store.scans == 1
    now[0] += 5.0
    snapshot.current()
    assert store.scans == 2
    metrics = ServerMetrics(kit, cache_seconds=5.0, clock=lambda: now[0])
    first = asyncio.run(metrics.scrape())
    metrics.observe_request("loopback", "status", "ok", 0.01)
    assert asyncio.run(metrics.scrape()) == first  # within RENDER_EVERY: the same text
    now[0] += RENDER_EVERY
    assert asyncio.run(metrics.scrape()) != first  # the new request is counted


def test_scrapes_beyond_the_rate_wait_their_turn() -> None:
    import asyncio

    metrics = ServerMetrics(make_kit(), max_per_second=20)

    async def flood() -> float:
        started = time.monotonic()
        await asyncio.gather(*(metrics.scrape() for _ in range(11)))
        return time.monotonic() - started

    # 11 scrapes at 20 a second: the last one's turn comes half a second after the first
    assert 0.45 <= asyncio.run(flood()) < 2.0


# -- connection limits, with real sockets -----------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> None:
    raise_fd_limit(4096)


def guarded(kit: SmsKit, **limits: Any) -> Tuple[Any, str, int]:
    """A running server with the ``server_*`` settings ``limits`` (as ``serve`` runs it): its
    handle, host and port."""
    settings = make_settings(**{f"server_{k}": str(v) for k, v in limits.items()})
    handle = start_server(create_app(kit, settings=settings, bind_host="127.0.0.1"),
                          **ServerLimits.from_settings(settings).uvicorn_options())
    host, port = handle.base_url.rsplit("//", 1)[1].split(":")
    return handle, host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def still_open(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def connect(port: int, count: int, first: bytes = b"") -> List[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first:
            sock.sendall(first)
        socks.append(sock)
    return socks


def webhook_head(message_id: str, length: int) -> bytes:
    return (f"POST {STATUS}?token={SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_a_connection_without_a_complete_request_head_is_closed() -> None:
    handle, _, port = guarded(make_kit(), header_timeout=0.4, keep_alive=30)
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        dripping = socket.create_connection(("127.0.0.1", port))
        dripping.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for part in (b"X-A: 1\r\n", b"X-B: 2\r\n"):  # bytes keep coming, the head never ends
            time.sleep(0.15)
            dripping.sendall(part)
        assert closed_within(silent, 3) and closed_within(dripping, 3)
        assert time.monotonic() - started < 2.5
        # a connection that completes its head in time is served
        ok = httpx.get(f"{handle.base_url}/healthz")
        assert ok.status_code == 200
    finally:
        handle.stop()


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() -> None:
    kit = make_kit()
    handle, _, port = guarded(kit, body_timeout=0.4)
    try:
        message_id = sent(kit)
        body = f'{{"message_id": "{message_id}", "state": "delivered"}}'.encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(webhook_head(message_id, len(body)) + body[:10])
        answer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"request timeout" in answer and b"connection: close" in answer.lower()
        assert kit.get(message_id).state is State.SENT  # type: ignore[union-attr]
    finally:
        handle.stop()


def test_idle_and_slow_clients_leave_healthz_and_webhooks_working() -> None:
    kit = make_kit()
    handle, _, port = guarded(kit, header_timeout=60, body_timeout=60)
    socks: List[socket.socket] = []
    try:
        message_id = sent(kit)
        socks += connect(port, 300)  # idle: connected, nothing sent
        socks += connect(port, 60, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # slow heads
        socks += connect(port, 20, webhook_head(message_id, 100) + b'{"mess')  # slow bodies
        timings = []
        for _ in range(20):
            started = time.monotonic()
            response = httpx.get(f"{handle.base_url}/healthz", timeout=5)
            timings.append(time.monotonic() - started)
            assert response.status_code == 200
        webhook = post(handle.base_url, [("token", SECRET)], message_id)
        assert webhook.status_code == 200
        assert max(timings) < 1.0, timings
        assert all(still_open(s) for s in socks[:300])  # within their timeouts: not cut
    finally:
        for sock in socks:
            sock.close()
        handle.stop()


def test_at_the_cap_the_longest_waiting_connection_makes_room() -> None:
    handle, _, port = guarded(make_kit(), max_connections=40, header_timeout=60)
    try:
        socks = []
        for _ in range(60):
            socks += connect(port, 1)
            time.sleep(0.005)  # an order of arrival
        time.sleep(0.2)
        response = httpx.get(f"{handle.base_url}/healthz", timeout=5)
        assert response.status_code == 200
        time.sleep(0.1)
        open_now = [still_open(s) for s in socks]
        assert not any(open_now[:20])  # the oldest made room for the newer ones
        assert all(open_now[-30:])
        for sock in socks:
            sock.close()
    finally:
        handle.stop()


def test_an_idle_kept_alive_connection_is_closed() -> None:
    handle, _, port = guarded(make_kit(), keep_alive=0.3)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 3)
    finally:
        handle.stop()


# -- text PostgreSQL cannot store; well-formed JSON never gives 5xx --------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL"))])
def sql_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return PG_URL if request.param == "postgresql" else f"sqlite:///{tmp_path / 'nul.db'}"


def test_a_kolmeya_reply_carrying_nul_is_stored_once(sql_url: str) -> None:
    pytest.importorskip("smskit_kolmeya.provider")
    import uuid

    from smskit.store.sql import SqlStore

    store = SqlStore(sql_url)
    kit = SmsKit(make_settings(provider="kolmeya", kolmeya_token="t"), store=store)
    reply_id = f"nul-{uuid.uuid4().hex}\u0000"
    escaped = reply_id.replace("\u0000", "\\u0000")
    body = ('{"reply": {"id": "' + escaped + '", "reply": "me\\u0000exemplo.com", "message": '
            '{"phone": "11987654321"}}}').encode()
    request = WebhookRequest(provider="kolmeya", kind="status", query=[("token", SECRET)],
                             headers={"content-type": "application/json"}, body=body)
    try:
        first, again = receive(kit, request), receive(kit, request)
        assert (first.status, again.status) == (200, 200)
        assert (first.body["new_inbound"], again.body["new_inbound"]) == (1, 0)
        [reply] = [m for m in store.list_messages(limit=1000)
                   if m.body.startswith("me") and m.phone == PHONE]
        assert reply.body == "me\ufffdexemplo.com"
    finally:
        store.close()


@pytest.mark.parametrize("body", [
    b'{"id": "k1", "reference": "M1", "status_code": "\\u00b2"}',
    b'{"id": "k1", "reference": "M1", "status_code": 1e308}',
    b'{"id": "k1", "reference": "M1", "status_code": ' + b"9" * 400 + b"}",
    b'{"id": "k1", "reference": "M1", "status_code": "' + b"9" * 5000 + b'"}',
    b'{"id": "k1", "reference": "M1", "status_code": 3, "delivered_at": '
    b'"9999-12-31T23:59:59-03:00"}',
    b'{"id": "k1", "reference": "M1", "status_code": 3, "delivered_at": "31/12/9999 23:59"}',
    b'{"id": "k1", "reference": "M1", "status_code": 3, "x": ' + b"[" * 1000 + b"]" * 1000
    + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"id": "k1", "reference": "M1", "status": "x", "x": NaN}',
    b'{"id": "k1", "reference": "M1", "status": "x", "x": "\xed\xa0\x80"}',  # raw surrogate
    '{"id": "k1", "reference": "M1", "status": "x", "x": "\\ud800"}'.encode("utf-16"),
    b'{"reply": {"id": "' + b"r" * 300 + b'", "reply": "oi", "phone": "11987654321"}}',
    b'{"reply": {"id": "r1", "reply": "oi", "phone": "' + b"1" * 400 + b'"}}',
])
def test_well_formed_json_that_used_to_fail_gets_an_answer_below_500(body: bytes) -> None:
    pytest.importorskip("smskit_kolmeya.provider")
    kit = SmsKit(make_settings(provider="kolmeya", kolmeya_token="t"), store=MemoryStore())
    request = WebhookRequest(provider="kolmeya", kind="status", query=[("token", SECRET)],
                             headers={"content-type": "application/json"}, body=body)
    assert receive(kit, request).status < 500


# -- clicks ---------------------------------------------------------------------------------------
def test_clicks_are_written_in_batches_and_unknown_codes_write_nothing() -> None:
    store = CountingStore()
    store.add_links([Link(code="Known123", url="https://a.exemplo.com.br/x", message_id="M",
                          created_at=time_now())])
    app = create_app(make_kit(store))
    with serve_in_thread(app) as base, httpx.Client() as client:
        known = [client.get(f"{base}/l/Known123").status_code for _ in range(40)]
        unknown = [client.get(f"{base}/l/Nope{i:04d}").status_code for i in range(40)]
        writes_while_running = store.click_writes
    assert known == [302] * 40 and unknown == [404] * 40
    assert writes_while_running <= 1  # gathered, not one transaction per click
    # the app's shutdown writes what was waiting
    assert store.click_count("Known123") == 40
    assert store.click_writes <= 2 and store.click_calls == 0


def time_now() -> Any:
    from smskit.models import utcnow

    return utcnow()
