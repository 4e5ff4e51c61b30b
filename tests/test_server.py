"""The reference webhook server, run under a real uvicorn on 127.0.0.1 and called with httpx."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import smskit
from smskit.config import Settings
from smskit.errors import ConfigurationError, StoreError
from smskit.kit import SmsKit
from smskit.models import State
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.store.memory import MemoryStore
from smskit.testing.servers import serve_in_thread
from smskit.webhooks.auth import split_query_token

SECRET = "s3cr3t-Tok_en"
PHONE = "+5511987654321"
STATUS = "/webhooks/loopback/status"
REPLY = "/webhooks/loopback/reply"


def make_settings(**values: str) -> Settings:
    """Settings with only the given keys (nothing read from the environment)."""
    values.setdefault("webhook_secret", SECRET)
    return Settings.load(environ={}, **{k: v for k, v in values.items() if v is not None})


class FlakyStore:
    """Wraps a store; while ``down`` is set, every write and read raises StoreError."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreError(f"{name}: database is unreachable")
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A memory store, or a SQLite file store."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield sql
    sql.close()


@pytest.fixture
def memory_kit() -> SmsKit:
    return SmsKit(make_settings(), store=MemoryStore(), provider=LoopbackProvider())


@pytest.fixture
def kit(store: Any) -> SmsKit:
    return SmsKit(make_settings(), store=store, provider=LoopbackProvider())


def serve(kit: SmsKit, settings: Optional[Settings] = None, *,
          bind_host: Optional[str] = None, **options: Any) -> Any:
    return serve_in_thread(create_app(kit, settings=settings, bind_host=bind_host), **options)


def post(base: str, path: str, payload: Any, *, token: Optional[str] = SECRET,
         headers: Optional[Dict[str, str]] = None) -> httpx.Response:
    params = {"token": token} if token is not None else None
    return httpx.post(base + path, params=params, json=payload, headers=headers)


def sent_message(kit: SmsKit) -> str:
    outcome = kit.send(PHONE, "Olá, sua fatura vence amanhã.")
    assert outcome.state is State.SENT
    assert outcome.message_id is not None
    return outcome.message_id


def status_events(kit: SmsKit, message_id: str) -> List[Any]:
    return [e for e in kit.store.history(message_id) if e.kind == "status"]


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["query", "header", "bearer"])
def test_token_accepted_from_query_header_or_bearer(memory_kit: SmsKit, how: str) -> None:
    message_id = sent_message(memory_kit)
    payload = {"message_id": message_id, "state": "delivered"}
    headers = {"header": {"X-Smskit-Token": SECRET},
               "bearer": {"Authorization": f"Bearer {SECRET}"}}.get(how)
    with serve(memory_kit) as base:
        response = post(base, STATUS, payload, token=SECRET if how == "query" else None,
                        headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"statuses": 1, "applied": 1, "ignored": 0, "unknown": 0,
                               "inbound": 0, "new_inbound": 0}
    assert memory_kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("token", "headers", "status"),
    [
        (None, None, 401),
        ("wrong", None, 403),
        (None, {"X-Smskit-Token": "wrong"}, 403),
        (None, {"Authorization": "Bearer wrong"}, 403),
        (None, {"Authorization": f"Basic {SECRET}"}, 401),
        (SECRET, {"X-Smskit-Token": "wrong"}, 403),  # every presented token must match
        ("tökén-ção", None, 403),  # non-ASCII is compared as bytes, not a 500
    ],
)
def test_bad_token_is_refused_and_nothing_written(
    memory_kit: SmsKit, token: Optional[str], headers: Optional[Dict[str, str]], status: int
) -> None:
    message_id = sent_message(memory_kit)
    before = memory_kit.history(message_id)
    with serve(memory_kit) as base:
        response = post(base, STATUS, {"message_id": message_id, "state": "delivered"},
                        token=token, headers=headers)
        reply = post(base, REPLY, {"id": "r1", "phone": PHONE, "text": "SAIR"},
                     token=token, headers=headers)
    assert response.status_code == status
    assert reply.status_code == status
    body = response.json()
    assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert memory_kit.history(message_id) == before
    assert memory_kit.get(message_id).state is State.SENT  # type: ignore[union-attr]
    assert memory_kit.store.orphan_events() == []
    assert not memory_kit.store.is_blacklisted(PHONE)
    assert memory_kit.store.list_messages(phone=PHONE) == [memory_kit.get(message_id)]


def test_no_secret_refuses_every_webhook_with_503() -> None:
    kit = SmsKit(make_settings(webhook_secret=None), store=MemoryStore(),  # type: ignore[arg-type]
                 provider=LoopbackProvider())
    message_id = sent_message(kit)
    with serve(kit) as base:
        response = post(base, STATUS, {"message_id": message_id, "state": "delivered"},
                        token="anything")
        health = httpx.get(f"{base}/healthz")
    assert response.status_code == 503
    assert response.json()["error"] == "webhook secret not configured"
    assert "SMSKIT_WEBHOOK_SECRET" in response.json()["detail"]
    assert kit.get(message_id).state is State.SENT  # type: ignore[union-attr]
    assert health.json()["webhooks"] == "disabled"


def test_insecure_mode_accepts_webhooks_without_a_token() -> None:
    settings = make_settings(webhook_secret=None, allow_insecure_webhooks="true")  # type: ignore[arg-type]
    kit = SmsKit(settings, store=MemoryStore(), provider=LoopbackProvider())
    message_id = sent_message(kit)
    with serve(kit) as base:
        response = post(base, STATUS, {"message_id": message_id, "state": "delivered"},
                        token=None)
        health = httpx.get(f"{base}/healthz")
    assert response.status_code == 200
    assert kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]
    assert health.json()["webhooks"] == "insecure"


def test_ip_allow_list(memory_kit: SmsKit) -> None:
    message_id = sent_message(memory_kit)
    payload = {"message_id": message_id, "state": "delivered"}
    outside = make_settings(webhook_allow_ips="10.0.0.0/8, 192.168.1.7")
    with serve(memory_kit, settings=outside) as base:
        refused = post(base, STATUS, payload)
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "detail": "client address not allowed"}
    assert memory_kit.get(message_id).state is State.SENT  # type: ignore[union-attr]

    inside = make_settings(webhook_allow_ips="10.0.0.0/8,127.0.0.0/8")
    with serve(memory_kit, settings=inside) as base:
        accepted = post(base, STATUS, payload)
    assert accepted.status_code == 200
    assert memory_kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]


def test_malformed_allow_list_fails_at_startup(memory_kit: SmsKit) -> None:
    with pytest.raises(ConfigurationError, match="not-an-ip"):
        create_app(memory_kit, settings=make_settings(webhook_allow_ips="not-an-ip"))


# -- limits and malformed input -------------------------------------------------------------


def test_non_json_content_type_is_415(memory_kit: SmsKit) -> None:
    message_id = sent_message(memory_kit)
    with serve(memory_kit) as base:
        response = httpx.post(f"{base}{STATUS}", params={"token": SECRET},
                              content=json.dumps({"message_id": message_id,
                                                  "state": "delivered"}),
                              headers={"Content-Type": "text/plain"})
        vendor = httpx.post(f"{base}{STATUS}", params={"token": SECRET},
                            content=json.dumps({"message_id": message_id,
                                                "state": "delivered"}),
                            headers={"Content-Type": "application/vnd.kolmeya+json"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported media type"
    assert vendor.status_code == 200  # +json types are JSON


def test_content_length_over_the_cap_is_413(memory_kit: SmsKit) -> None:
    settings = make_settings(webhook_max_bytes="1024")
    body = json.dumps({"message_id": "x", "state": "delivered", "pad": "a" * 2000})
    with serve(memory_kit, settings=settings) as base:
        response = httpx.post(f"{base}{STATUS}", params={"token": SECRET}, content=body,
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Content-Length ")
    assert memory_kit.store.orphan_events() == []


def test_chunked_body_over_the_cap_is_413_while_streaming(memory_kit: SmsKit) -> None:
    settings = make_settings(webhook_max_bytes="1024")

    def chunks() -> Iterator[bytes]:
        yield b'{"message_id": "x", "state": "delivered", "pad": "'
        for _ in range(3):
            yield b"a" * 500
        yield b'"}'

    with serve(memory_kit, settings=settings) as base:
        response = httpx.post(f"{base}{STATUS}", params={"token": SECRET}, content=chunks(),
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "payload too large",
                               "detail": "the body exceeds the limit of 1024 bytes"}
    assert memory_kit.store.orphan_events() == []


def test_malformed_json_is_400_without_traceback(memory_kit: SmsKit) -> None:
    with serve(memory_kit) as base:
        response = httpx.post(f"{base}{STATUS}", params={"token": SECRET},
                              content=b'{"message_id": "x", "state": ',
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed JSON"
    assert body["detail"]
    assert "Traceback" not in response.text


def test_text_that_is_not_unicode_is_400_and_writes_nothing(kit: SmsKit) -> None:
    # Found by the webhook fuzz: a lone surrogate escape decodes but can never be stored.
    message_id = sent_message(kit)
    with serve(kit) as base:
        response = httpx.post(
            f"{base}{STATUS}", params={"token": SECRET},
            content=b'{"message_id": "' + message_id.encode() + b'", "state": "delivered",'
                    b' "note": "\\ud800"}',
            headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid Unicode" in response.json()["detail"]
    message = kit.get(message_id)
    assert message is not None and message.state is State.SENT


@pytest.mark.parametrize("payload", [{"unexpected": True}, [1, 2], {"message_id": "x",
                                                                      "state": "teleported"}])
def test_unknown_shape_is_400(memory_kit: SmsKit, payload: Any) -> None:
    with serve(memory_kit) as base:
        response = post(base, STATUS, payload)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid payload"
    assert "loopback webhook" in response.json()["detail"]
    assert "Traceback" not in response.text
    assert memory_kit.store.orphan_events() == []


def test_unknown_provider_kind_and_route_are_json_404(memory_kit: SmsKit) -> None:
    with serve(memory_kit) as base:
        provider = post(base, "/webhooks/nosuch/status", {"message_id": "x", "state": "sent"})
        kind = post(base, "/webhooks/loopback/bounce", {"message_id": "x", "state": "sent"})
        route = httpx.get(f"{base}/nowhere")
        method = httpx.get(f"{base}{STATUS}")
    assert provider.status_code == 404
    assert provider.json() == {"error": "not found", "detail": "unknown provider 'nosuch'"}
    assert kind.status_code == 404
    assert "'bounce'" in kind.json()["detail"]
    assert route.status_code == 404
    assert route.json()["error"] == "not found"
    assert method.status_code == 405
    assert method.json()["error"] == "method not allowed"


class ExplodingProvider(LoopbackProvider):
    """A provider whose parser fails in an unexpected way."""

    def parse_webhook(self, request: Any) -> Any:
        raise RuntimeError("parser bug with internal detail")


def test_unexpected_error_is_500_json_without_detail(caplog: pytest.LogCaptureFixture) -> None:
    kit = SmsKit(make_settings(), store=MemoryStore(), provider=ExplodingProvider())
    with serve(kit) as base:
        response = post(base, STATUS, {"message_id": "x", "state": "sent"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "Traceback" not in response.text
    assert "internal detail" not in response.text
    assert "parser bug with internal detail" in caplog.text  # logged server-side


def test_provider_never_sees_the_token_headers() -> None:
    seen: List[Dict[str, str]] = []

    class Recording(LoopbackProvider):
        def parse_webhook(self, request: Any) -> Any:
            seen.append(dict(request.headers))
            return super().parse_webhook(request)

    kit = SmsKit(make_settings(), store=MemoryStore(), provider=Recording())
    message_id = sent_message(kit)
    with serve(kit) as base:
        response = post(base, STATUS, {"message_id": message_id, "state": "delivered"},
                        token=None, headers={"Authorization": f"Bearer {SECRET}",
                                             "X-Smskit-Token": SECRET})
    assert response.status_code == 200
    assert seen
    assert SECRET not in json.dumps(seen)


# -- effects --------------------------------------------------------------------------------


def test_duplicate_status_is_a_noop(kit: SmsKit) -> None:
    message_id = sent_message(kit)
    payload = {"message_id": message_id, "state": "delivered"}
    with serve(kit) as base:
        first = post(base, STATUS, payload)
        second = post(base, STATUS, payload)
    assert first.json()["applied"] == 1
    assert second.status_code == 200
    assert second.json() == {"statuses": 1, "applied": 0, "ignored": 1, "unknown": 0,
                             "inbound": 0, "new_inbound": 0}
    applied = [e for e in status_events(kit, message_id) if e.applied]
    assert len(applied) == 1
    assert applied[0].new_state == "delivered"


def test_out_of_order_status_never_moves_backwards(kit: SmsKit) -> None:
    message_id = sent_message(kit)
    with serve(kit) as base:
        post(base, STATUS, {"message_id": message_id, "state": "delivered"})
        late = post(base, STATUS, {"message_id": message_id, "state": "sent"})
    assert late.status_code == 200
    assert late.json()["ignored"] == 1
    assert kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]


def test_unknown_message_id_is_recorded_as_orphan(kit: SmsKit) -> None:
    with serve(kit) as base:
        response = post(base, STATUS, {"message_id": "no-such-message", "state": "delivered"})
    assert response.status_code == 200
    assert response.json()["unknown"] == 1
    orphans = kit.store.orphan_events()
    assert len(orphans) == 1
    assert orphans[0].message_id is None


def test_reply_is_recorded_once_per_reply_id(kit: SmsKit) -> None:
    reply = {"id": "reply-1", "phone": "11912345678", "text": "Obrigado!"}
    with serve(kit) as base:
        first = post(base, REPLY, reply)
        second = post(base, REPLY, reply)
    assert first.json()["new_inbound"] == 1
    assert second.status_code == 200
    assert second.json() == {"statuses": 0, "applied": 0, "ignored": 0, "unknown": 0,
                             "inbound": 1, "new_inbound": 0}
    stored = kit.store.list_messages(phone="+5511912345678")
    assert len(stored) == 1
    assert stored[0].body == "Obrigado!"


def test_optout_reply_blacklists_the_sender(kit: SmsKit) -> None:
    with serve(kit) as base:
        response = post(base, REPLY, {"id": "r-sair", "phone": PHONE, "text": "SAIR"})
    assert response.status_code == 200
    assert kit.store.is_blacklisted(PHONE)
    later = kit.send(PHONE, "Promoção!")
    assert later.state is State.CANCELED


class FailingHook:
    """A plugin whose status hook raises."""

    @smskit.hookimpl
    def message_status_changed(self, message: Any, old: Any, new: Any) -> None:
        raise RuntimeError("hook exploded")


def test_failing_hook_still_answers_200_and_is_recorded(memory_kit: SmsKit) -> None:
    memory_kit.plugins.register(FailingHook(), name="failing-hook")
    message_id = sent_message(memory_kit)
    with serve(memory_kit) as base:
        response = post(base, STATUS, {"message_id": message_id, "state": "delivered"})
    assert response.status_code == 200
    assert response.json()["applied"] == 1
    assert memory_kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]
    errors = [e for e in memory_kit.history(message_id) if e.kind == "hook_error"]
    assert len(errors) == 1
    assert "hook exploded" in errors[0].detail


def test_store_failure_is_503_and_the_retry_applies(store: Any) -> None:
    flaky = FlakyStore(store)
    kit = SmsKit(make_settings(), store=flaky, provider=LoopbackProvider())  # type: ignore[arg-type]
    message_id = sent_message(kit)
    payload = {"message_id": message_id, "state": "delivered"}
    with serve(kit) as base:
        flaky.down = True
        failed = post(base, STATUS, payload)
        health = httpx.get(f"{base}/healthz")
        flaky.down = False
        retried = post(base, STATUS, payload)
        healthy = httpx.get(f"{base}/healthz")
    assert failed.status_code == 503
    assert failed.json()["error"] == "store unavailable"
    assert failed.headers["retry-after"]
    assert "Traceback" not in failed.text
    assert health.status_code == 503
    assert health.json()["store"] == "unreachable"
    assert retried.json()["applied"] == 1
    assert kit.get(message_id).state is State.DELIVERED  # type: ignore[union-attr]
    assert healthy.status_code == 200


# -- healthz, metrics, logs -------------------------------------------------------------------


def test_healthz(memory_kit: SmsKit) -> None:
    with serve(memory_kit) as base:
        response = httpx.get(f"{base}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok", "webhooks": "token"}


def _samples(text: str) -> Dict[str, List[Any]]:
    found: Dict[str, List[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _value(samples: List[Any], **labels: str) -> Optional[float]:
    for sample in samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


def test_metrics(memory_kit: SmsKit) -> None:
    delivered = sent_message(memory_kit)
    sent_message(memory_kit)
    with serve(memory_kit, bind_host="127.0.0.1") as base:  # loopback: open without a token
        post(base, STATUS, {"message_id": delivered, "state": "delivered"})
        post(base, STATUS, {"message_id": delivered, "state": "delivered"})
        post(base, STATUS, {"message_id": delivered, "state": "delivered"}, token="wrong")
        post(base, "/webhooks/made-up-name/status", {"x": 1}, token="wrong")
        response = httpx.get(f"{base}/metrics")
        second_app = create_app(memory_kit)  # its own registry: no duplicate-metric error
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    messages = samples["smskit_messages"]
    assert _value(messages, provider="loopback", state="delivered") == 1
    assert _value(messages, provider="loopback", state="sent") == 1
    assert _value(messages, provider="loopback", state="error") == 0
    assert _value(samples["smskit_store_up"]) == 1
    requests = samples["smskit_webhook_requests_total"]
    assert _value(requests, provider="loopback", kind="status", outcome="ok") == 2
    assert _value(requests, provider="loopback", kind="status", outcome="forbidden") == 1
    # attacker-chosen provider names never become label values
    assert _value(requests, provider="unknown", kind="status", outcome="forbidden") == 1
    assert all(s.labels["provider"] != "made-up-name" for s in requests)
    events = samples["smskit_webhook_events_total"]
    assert _value(events, provider="loopback", type="status", result="applied") == 1
    assert _value(events, provider="loopback", type="status", result="ignored") == 1
    counts = samples["smskit_webhook_duration_seconds_count"]
    assert _value(counts, provider="loopback", kind="status") == 3
    assert second_app.state.registry is not create_app(memory_kit).state.registry


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_token_never_appears_in_logs(memory_kit: SmsKit,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="httpx")  # the client logs its own URLs
    caplog.set_level(logging.INFO)  # last: it also sets the capture handler's level
    message_id = sent_message(memory_kit)
    # Older uvicorn releases (the ones Python 3.8 gets) do not propagate their access log to
    # the root logger: listen on the logger itself.
    uvicorn_access = _Records()
    logging.getLogger("uvicorn.access").addHandler(uvicorn_access)
    try:
        with serve(memory_kit, log_level="info", log_config=None, access_log=True) as base:
            ok = post(base, STATUS, {"message_id": message_id, "state": "delivered"})
            bad = httpx.post(f"{base}{STATUS}", params={"token": SECRET, "x": "1"},
                             content=b"{not json", headers={"Content-Type": "application/json"})
            wrong = post(base, STATUS, {"message_id": message_id, "state": "sent"},
                         token=SECRET + "x")
    finally:
        logging.getLogger("uvicorn.access").removeHandler(uvicorn_access)
    assert (ok.status_code, bad.status_code, wrong.status_code) == (200, 400, 403)
    access = [r for r in caplog.records if r.name == "smskit.server.access"]
    assert any("token=********" in r.getMessage() for r in access)
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    uvicorn_lines = [r.getMessage() for r in uvicorn_access.records]
    assert len(uvicorn_lines) == 3, "uvicorn's access log was switched on: one line a request"
    assert all("token=********" in line and SECRET not in line for line in uvicorn_lines)


# -- helpers ------------------------------------------------------------------------------------


def test_split_query_token() -> None:
    assert split_query_token(b"") == (None, b"")
    assert split_query_token(b"a=1") == (None, b"a=1")
    assert split_query_token(b"a=1&token=s%2Fx&token=y") == ("s/x", b"a=1&token=********"
                                                             b"&token=********")


def test_kolmeya_reply_arrives_on_the_status_url() -> None:
    """Kolmeya takes one webhook_url per request: replies reach /webhooks/kolmeya/status."""
    pytest.importorskip("smskit_kolmeya.provider")
    settings = make_settings(kolmeya_token="kolmeya-api-token")
    kit = SmsKit(settings, store=MemoryStore())
    reply = {"reply": {"id": "k-reply-1", "reply": "PARAR", "received_at": "26/11/2026 10:00:00",
                       "message": {"id": "k-msg-1", "reference": None, "phone": "11987654321",
                                   "content": "Sua fatura vence amanhã."}}}
    with serve(kit) as base:
        response = post(base, "/webhooks/kolmeya/status", reply)
        again = post(base, "/webhooks/kolmeya/status", reply)
    assert response.status_code == 200, response.text
    assert response.json()["new_inbound"] == 1
    assert again.json()["new_inbound"] == 0
    assert kit.store.is_blacklisted(PHONE)
