"""The webhook gate (smskit.webhooks): every refusal and acceptance, with no server; and the
synchronous path an Odoo controller takes answers exactly as the Starlette server does."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
import httpx
import pytest

import smskit
from smskit.config import Secret, Settings
from smskit.errors import ConfigurationError, StoreError, ValidationError
from smskit.kit import SmsKit
from smskit.models import Message, State, StatusEvent, utcnow
from smskit.plugins import Plugins
from smskit.provider import Capabilities, WebhookPayload
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.store.memory import MemoryStore
from smskit.testing.servers import serve_in_thread
from smskit.webhooks import (
    Accepted,
    Decision,
    WebhookGate,
    WebhookPolicy,
    WebhookRequest,
    WebhookResponse,
    authenticate,
    media,
    parse_query,
    receive,
    respond,
)
from smskit.webhooks.auth import AuthResult
from smskit.webhooks.gate import RETRY_AFTER, failure, media_types, read_payload
from smskit.webhooks.media import FORM

SECRET = "gate-s3cret"
MESSAGE_ID = "MSG-GATE-1"
JSON_HEADERS = {"Content-Type": "application/json"}


class Quiet(LoopbackProvider):
    """A gateway that takes no webhooks."""

    capabilities = Capabilities(reconcile=True)

    def __init__(self) -> None:
        super().__init__("quiet")


class Signed(LoopbackProvider):
    """A gateway posting forms and signing them: an HMAC of the URL and the sorted fields."""

    webhook_media_types = (FORM,)

    def __init__(self, key: str = "signing-key") -> None:
        super().__init__("signed")
        self.key = key
        self.seen: List[WebhookRequest] = []

    def signature(self, url: str, fields: Sequence[Tuple[str, str]]) -> str:
        material = url + "".join(name + value for name, value in sorted(fields))
        return hmac.new(self.key.encode(), material.encode(), hashlib.sha256).hexdigest()

    def verify_webhook(self, request: WebhookRequest) -> AuthResult:
        self.seen.append(request)
        presented = request.headers.get("x-signature")
        if presented is None:
            return AuthResult.MISSING
        expected = self.signature(request.url or "", request.data)
        return AuthResult.OK if hmac.compare_digest(presented, expected) else AuthResult.WRONG

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        fields = dict(request.data)
        try:
            event = StatusEvent(provider=self.name, state=State(fields["state"]),
                                message_id=fields["message_id"])
        except (KeyError, ValueError) as exc:
            raise ValidationError(f"signed webhook: {exc}") from exc
        return WebhookPayload(statuses=(event,))


class Exploding(LoopbackProvider):
    """A provider whose parser has a bug."""

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        raise RuntimeError("parser bug with internal detail")


def policy(**values: Any) -> WebhookPolicy:
    values.setdefault("secret", Secret(SECRET))
    return WebhookPolicy(**values)


def make_gate(*providers: Any, gate_policy: Optional[WebhookPolicy] = None,
              known: Sequence[str] = (), calls: Optional[List[str]] = None) -> WebhookGate:
    """A gate over ``providers`` by name (``known`` names more that fail to build)."""
    by_name = {p.name: p for p in providers}

    def lookup(name: str) -> Any:
        if calls is not None:
            calls.append(name)
        if name not in by_name:
            raise ConfigurationError(f"cannot build {name!r}")
        return by_name[name]

    return WebhookGate(gate_policy or policy(), lookup, known=[*by_name, *known])


def request(provider: str = "loopback", kind: str = "status", *, body: Any = None,
            token: Optional[str] = SECRET, headers: Optional[Dict[str, str]] = None,
            query: Sequence[Tuple[str, str]] = (), **fields: Any) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(
        body if body is not None else {"message_id": MESSAGE_ID, "state": "delivered"}).encode()
    pairs = [*query, *([("token", token)] if token is not None else [])]
    fields.setdefault("client_host", "127.0.0.1")
    return WebhookRequest(provider=provider, kind=kind, body=raw, query=pairs,
                          headers=JSON_HEADERS if headers is None else headers, **fields)


def refusal(decision: Decision) -> Tuple[int, Dict[str, Any], Dict[str, str], str]:
    assert isinstance(decision, WebhookResponse), decision
    return decision.status, decision.body, decision.headers, decision.outcome


# -- refusals ---------------------------------------------------------------------------------


def test_method_and_kind_come_first() -> None:
    gate = make_gate(LoopbackProvider())
    assert refusal(gate.check(request(method="GET", token=None))) == (
        405, {"error": "method not allowed", "detail": "Method Not Allowed"},
        {"Allow": "POST"}, "not_allowed")
    status, body, _, outcome = refusal(gate.check(request(kind="bounce", token=None)))
    assert (status, body["error"], outcome) == (404, "not found", "not_found")
    assert body["detail"] == "unknown webhook kind 'bounce'; expected 'status' or 'reply'"


@pytest.mark.parametrize(("token", "headers", "status", "detail"), [
    (None, JSON_HEADERS, 401,
     "missing webhook token (?token=, X-Smskit-Token or Authorization: Bearer)"),
    ("wrong", JSON_HEADERS, 403, "invalid webhook token"),
    (None, {**JSON_HEADERS, "X-Smskit-Token": "wrong"}, 403, "invalid webhook token"),
    (None, {**JSON_HEADERS, "Authorization": f"Basic {SECRET}"}, 401,
     "missing webhook token (?token=, X-Smskit-Token or Authorization: Bearer)"),
    (SECRET, {**JSON_HEADERS, "authorization": "Bearer wrong"}, 403, "invalid webhook token"),
])
def test_callers_without_the_secret_are_refused_before_any_provider_is_built(
        token: Optional[str], headers: Dict[str, str], status: int, detail: str) -> None:
    calls: List[str] = []
    gate = make_gate(LoopbackProvider(), calls=calls)
    answer = refusal(gate.check(request(token=token, headers=headers)))
    assert answer[:2] == (status, {"error": "unauthorized" if status == 401 else "forbidden",
                                   "detail": detail})
    assert answer[2] == ({"WWW-Authenticate": "Bearer"} if status == 401 else {})
    assert calls == []


def test_every_value_of_a_repeated_token_parameter_must_match() -> None:
    gate = make_gate(LoopbackProvider())
    assert refusal(gate.check(request(query=[("token", "wrong")])))[0] == 403
    assert refusal(gate.check(request(query=[("token", "wrong")], token=None)))[0] == 403
    assert isinstance(gate.check(request(query=[("token", SECRET)])), Accepted)


@pytest.mark.parametrize("how", ["query", "header", "bearer"])
def test_the_token_is_accepted_from_query_header_or_bearer(how: str) -> None:
    headers = {**JSON_HEADERS, **{"query": {}, "header": {"x-SMSKIT-token": SECRET},
                                  "bearer": {"Authorization": f"bearer {SECRET}"}}[how]}
    decision = make_gate(LoopbackProvider()).check(
        request(token=SECRET if how == "query" else None, headers=headers))
    assert isinstance(decision, Accepted)


def test_no_secret_refuses_everything_and_insecure_mode_needs_no_token() -> None:
    closed = make_gate(LoopbackProvider(), gate_policy=WebhookPolicy())
    status, body, _, outcome = refusal(closed.check(request()))
    assert (status, body["error"], outcome) == (503, "webhook secret not configured",
                                                "not_configured")
    assert "SMSKIT_WEBHOOK_SECRET" in body["detail"]
    demo = make_gate(LoopbackProvider(), gate_policy=WebhookPolicy(insecure=True))
    assert isinstance(demo.check(request(token=None)), Accepted)


def test_ip_allow_list() -> None:
    settings = Settings.load(environ={}, webhook_secret=SECRET, webhook_allow_ips="10.0.0.0/8")
    gate = make_gate(LoopbackProvider(), gate_policy=WebhookPolicy.from_settings(settings))
    assert refusal(gate.check(request()))[:2] == (
        403, {"error": "forbidden", "detail": "client address not allowed"})
    inside = request(client_host="10.1.2.3")
    assert isinstance(gate.check(inside), Accepted)


def test_providers_unknown_unbuildable_or_without_webhooks() -> None:
    gate = make_gate(LoopbackProvider(), Quiet(), known=["broken"])
    assert refusal(gate.check(request("nosuch")))[:2] == (
        404, {"error": "not found", "detail": "unknown provider 'nosuch'"})
    assert refusal(gate.check(request("")))[:2] == (  # never the kit's default provider
        404, {"error": "not found", "detail": "unknown provider ''"})
    assert refusal(gate.check(request("quiet")))[:2] == (
        404, {"error": "not found", "detail": "provider 'quiet' does not accept webhooks"})
    assert refusal(gate.check(request("broken"))) == (
        503, {"error": "provider unavailable", "detail": "provider 'broken' is not configured"},
        {"Retry-After": RETRY_AFTER}, "provider_error")
    assert not gate.is_known("nosuch") and gate.is_known("broken")


def test_a_provider_declaring_an_undecodable_media_type_is_unavailable() -> None:
    odd = LoopbackProvider("odd")
    odd.webhook_media_types = ("text/csv",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="text/csv"):
        media_types(odd)
    assert refusal(make_gate(odd).check(request("odd")))[0] == 503


@pytest.mark.parametrize(("content_type", "accepted"), [
    ("application/json", True), ("Application/JSON; charset=utf-8", True),
    ("application/vnd.kolmeya+json", True), ("text/plain", False),
    ("", True),  # no Content-Type: the provider's first media type, as read_payload reads it
    (FORM, False),
])
def test_content_type(content_type: str, accepted: bool) -> None:
    headers = {"content-type": content_type} if content_type else {}
    decision = make_gate(LoopbackProvider()).check(request(headers=headers))
    if accepted:
        assert isinstance(decision, Accepted)
    else:
        assert refusal(decision) == (
            415, {"error": "unsupported media type",
                  "detail": "the body must be JSON (application/json)"}, {},
            "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["", "text/plain"])
def test_the_gate_and_read_payload_read_a_content_type_alike(content_type: str) -> None:
    # a trusting caller (handle_webhook) and the gate agree on every Content-Type: none is the
    # provider's first media type (JSON here, a form for a form-posting provider)
    class Unsigned(Signed):
        def verify_webhook(self, request: WebhookRequest) -> AuthResult:
            return AuthResult.OK

    headers = {"content-type": content_type} if content_type else {}
    form = b"state=delivered&message_id=" + MESSAGE_ID.encode()
    for provider, body in ((LoopbackProvider(), None), (Unsigned(), form)):
        hook = request(provider.name, body=body, headers=headers)
        decision = make_gate(provider).check(hook)
        if content_type:
            assert refusal(decision)[0] == 415
            with pytest.raises(ValidationError, match="the body must be"):
                read_payload(provider, hook)
        else:
            assert isinstance(decision, Accepted)
            for payload in (decision.payload, read_payload(provider, hook)):
                assert [(e.state, e.message_id) for e in payload.statuses] == [
                    (State.DELIVERED, MESSAGE_ID)]


def test_size_limits_from_the_header_and_the_body() -> None:
    gate = make_gate(LoopbackProvider(), gate_policy=policy(max_bytes=64))
    big = request(body={"message_id": MESSAGE_ID, "state": "delivered", "pad": "x" * 64})
    assert refusal(gate.check(big))[:2] == (
        413, {"error": "payload too large", "detail": "the body exceeds the limit of 64 bytes"})
    declared = request(headers={**JSON_HEADERS, "Content-Length": "65"})
    assert refusal(gate.check_head(declared))[:2] == (  # type: ignore[arg-type]
        413, {"error": "payload too large",
              "detail": "Content-Length 65 exceeds the limit of 64 bytes"})
    bogus = request(headers={**JSON_HEADERS, "Content-Length": "ten"})
    assert refusal(gate.check(bogus))[:2] == (
        400, {"error": "bad request", "detail": "invalid Content-Length 'ten'"})


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"message_id": "x", "state": ', "Expecting value"),
    (b'{"state": "\xff"}', "codec can't decode"),
    (b'{"message_id": "x", "state": "delivered", "note": "\\ud800"}', "not valid Unicode"),
])
def test_malformed_json_is_400(body: bytes, detail: str) -> None:
    status, answer, _, outcome = refusal(make_gate(LoopbackProvider()).check(request(body=body)))
    assert (status, answer["error"], outcome) == (400, "malformed JSON", "invalid")
    assert detail in answer["detail"]


def test_parser_errors(caplog: pytest.LogCaptureFixture) -> None:
    gate = make_gate(LoopbackProvider(), Exploding("exploding"))
    status, body, _, _ = refusal(gate.check(request(body={"unexpected": True})))
    assert (status, body["error"]) == (400, "invalid payload")
    assert "loopback webhook" in body["detail"]
    assert refusal(gate.check(request("exploding"))) == (
        500, {"error": "internal error"}, {}, "error")
    assert "parser bug with internal detail" in caplog.text  # only the log has it


# -- acceptance --------------------------------------------------------------------------------


def test_accepted_names_what_to_apply_and_the_provider_never_sees_the_secret() -> None:
    seen: List[WebhookRequest] = []

    class Recording(LoopbackProvider):
        def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
            seen.append(request)
            return super().parse_webhook(request)

    call = request(headers={**JSON_HEADERS, "X-Smskit-Token": SECRET, "Cookie": "session=1",
                            "X-Gateway": "kept"}, query=[("a", "1")],
                   url=f"https://sms.example/webhooks/loopback/status?a=1&token={SECRET}")
    decision = make_gate(Recording()).check(call)
    assert isinstance(decision, Accepted)
    assert (decision.provider, decision.kind) == ("loopback", "status")
    assert decision.payload.statuses[0].message_id == MESSAGE_ID
    [given] = seen
    assert given.data == {"message_id": MESSAGE_ID, "state": "delivered"}
    assert given.headers == {"content-type": "application/json", "x-gateway": "kept"}
    assert given.query == (("a", "1"),)
    assert SECRET not in repr(given)


def test_check_head_needs_no_body() -> None:
    gate = make_gate(LoopbackProvider())
    assert gate.check_head(request(body=b"")) is None
    assert refusal(gate.check(request(body=b"")))[1]["error"] == "malformed JSON"
    assert refusal(gate.check_head(request(token="wrong")))[0] == 403  # type: ignore[arg-type]


def test_begin_checks_the_head_once_and_finish_reads_the_body() -> None:
    """A streaming receiver checks the head with ``begin`` and completes it with the body it
    read: the provider is looked up once, and the body given to ``finish`` is the one decoded
    (and the one the provider sees), not the head's."""
    calls: List[str] = []
    gate = make_gate(LoopbackProvider(), calls=calls)
    head = request(body=b"")
    admission = gate.begin(head)
    assert not isinstance(admission, WebhookResponse)
    body = json.dumps({"message_id": MESSAGE_ID, "state": "delivered"}).encode()
    decision = gate.finish(admission, body)
    assert isinstance(decision, Accepted)
    assert decision.payload.statuses[0].message_id == MESSAGE_ID
    assert calls == ["loopback"]
    assert refusal(gate.finish(admission, b"{"))[1]["error"] == "malformed JSON"
    small = make_gate(LoopbackProvider(), gate_policy=policy(max_bytes=len(body) - 1))
    admitted = small.begin(head)
    assert not isinstance(admitted, WebhookResponse)
    assert refusal(small.finish(admitted, body))[:2] == (413, {
        "error": "payload too large",
        "detail": f"the body exceeds the limit of {len(body) - 1} bytes"})
    assert refusal(gate.begin(request(token="wrong")))[0] == 403  # type: ignore[arg-type]


def test_the_provider_sees_the_body_given_to_finish() -> None:
    signed = Signed()
    fields = [("message_id", MESSAGE_ID), ("state", "delivered")]
    full = signed_request(signed, fields)
    gate = make_gate(signed)
    admission = gate.begin(attrs.evolve(full, body=b""))
    assert not isinstance(admission, WebhookResponse)
    assert isinstance(gate.finish(admission, full.body), Accepted)
    [seen] = signed.seen
    assert seen.body == full.body
    assert seen.data == tuple(fields)


def signed_request(provider: Signed, fields: List[Tuple[str, str]], *,
                   signature: Optional[str] = None, sign: bool = True) -> WebhookRequest:
    url = f"https://sms.example/webhooks/signed/status?token={SECRET}"
    body = "&".join(f"{k}={v}" for k, v in fields).encode()
    headers = {"Content-Type": FORM}
    if sign:
        headers["X-Signature"] = signature or provider.signature(url, fields)
    return request("signed", body=body, headers=headers, url=url)


def test_a_form_posting_provider_checks_its_own_signature() -> None:
    signed = Signed()
    gate = make_gate(signed)
    fields = [("state", "delivered"), ("message_id", MESSAGE_ID)]
    decision = gate.check(signed_request(signed, fields))
    assert isinstance(decision, Accepted)
    assert decision.payload.statuses[0].state is State.DELIVERED
    assert signed.seen[-1].data == (("state", "delivered"), ("message_id", MESSAGE_ID))
    assert refusal(gate.check(signed_request(signed, fields, sign=False)))[:2] == (
        401, {"error": "unauthorized", "detail": "missing the 'signed' webhook signature"})
    assert refusal(gate.check(signed_request(signed, fields, signature="0" * 64)))[:2] == (
        403, {"error": "forbidden", "detail": "invalid 'signed' webhook signature"})
    # JSON to a form-only provider, and a body that is not a UTF-8 form
    assert refusal(gate.check(request("signed")))[:2] == (
        415, {"error": "unsupported media type",
              "detail": f"the body must be a form ({FORM})"})
    status, body, _, _ = refusal(gate.check(request("signed", body=b"state=\xff",
                                                    headers={"Content-Type": FORM})))
    assert (status, body["error"]) == (400, "malformed form")


def test_a_signature_covers_the_text_as_sent_and_the_parser_sees_no_nul() -> None:
    # the NUL rule (U+0000 -> U+FFFD) comes after the provider's own check: a gateway signs
    # what it sent, so a field carrying %00 still matches its signature
    seen: List[WebhookRequest] = []

    class Watching(Signed):
        def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
            seen.append(request)
            return super().parse_webhook(request)

    signed = Watching()
    url = f"https://sms.example/webhooks/signed/status?token={SECRET}"
    fields = [("state", "delivered"), ("message_id", MESSAGE_ID), ("text", "me\x00exemplo")]
    body = b"state=delivered&message_id=" + MESSAGE_ID.encode() + b"&text=me%00exemplo"
    decision = make_gate(signed).check(request(
        "signed", body=body, url=url, headers={"Content-Type": FORM,
                                               "X-Signature": signed.signature(url, fields)}))
    assert isinstance(decision, Accepted)
    assert dict(signed.seen[-1].data)["text"] == "me\x00exemplo"  # what was signed
    assert dict(seen[-1].data)["text"] == "me\ufffdexemplo"  # what the parser is given


def test_json_text_reaches_the_parser_without_nul() -> None:
    seen: List[Any] = []

    class Watching(LoopbackProvider):
        def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
            seen.append(request.data)
            return super().parse_webhook(request)

    gate = make_gate(Watching())
    body = b'{"message_id": "M\\u0000", "state": "delivered", "x\\u0000": ["a\\u0000b"]}'
    assert isinstance(gate.check(request(body=body)), Accepted)
    assert seen == [{"message_id": "M\ufffd", "state": "delivered", "x\ufffd": ["a\ufffdb"]}]


def test_authenticate_alone_builds_nothing() -> None:
    assert authenticate(policy(), request(provider="anything")) is None
    refused = authenticate(policy(), request(token=None))
    assert refused is not None and refused.status == 401


def test_failure_mapping(caplog: pytest.LogCaptureFixture) -> None:
    assert failure(ValidationError("bad"), "p", "status").body == {"error": "invalid payload",
                                                                   "detail": "bad"}
    for down in (StoreError("db down"), OSError("disk")):
        response = failure(down, "p", "status")
        assert (response.status, response.headers) == (503, {"Retry-After": RETRY_AFTER})
        assert response.body["error"] == "store unavailable"
    assert failure(KeyError("secret detail"), "p", "status").body == {"error": "internal error"}
    assert "secret detail" in caplog.text


# -- applying synchronously ----------------------------------------------------------------------


def sent_message() -> Message:
    now = utcnow()
    return Message(id=MESSAGE_ID, phone="+5511987654321", body="Olá", state=State.SENT,
                   provider="loopback", provider_message_id="lb-1", created_at=now, sent_at=now,
                   segments=1)


def test_respond_applies_and_answers() -> None:
    store = MemoryStore()
    store.add_messages([sent_message()])
    kit = SmsKit(Settings.load(environ={}, webhook_secret=SECRET), store=store,
                 provider=LoopbackProvider())
    response = respond(kit, make_gate(LoopbackProvider()).check(request()))
    assert (response.status, response.body, response.outcome) == (
        200, {"statuses": 1, "applied": 1, "ignored": 0, "unknown": 0, "inbound": 0,
              "new_inbound": 0}, "ok")
    assert store.get(MESSAGE_ID).state is State.DELIVERED  # type: ignore[union-attr]


def test_handle_webhook_trusts_the_caller_but_still_decodes_once() -> None:
    kit = SmsKit(Settings.load(environ={}), store=MemoryStore(), provider=LoopbackProvider())
    report = kit.handle_webhook("loopback", "reply", {}, json.dumps(
        {"id": "r1", "phone": "+5511987654321", "text": "oi"}).encode())
    assert [i.created for i in report.inbound] == [True]
    with pytest.raises(ValidationError, match="the body must be JSON"):
        kit.handle_webhook("loopback", "status", {"Content-Type": "text/plain"}, b"{}")
    with pytest.raises(ValidationError, match="malformed JSON"):
        read_payload(LoopbackProvider(), WebhookRequest(provider="loopback", kind="status",
                                                        body=b"{nope"))


def test_the_gate_imports_no_web_framework() -> None:
    code = ("import sys, smskit.webhooks, smskit.kit; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'starlette', 'uvicorn', 'werkzeug', 'flask', 'odoo', 'prometheus_client'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_parse_query_keeps_repeated_parameters() -> None:
    assert parse_query(b"a=1&token=s%2Fx&a=2&empty=") == (
        ("a", "1"), ("token", "s/x"), ("a", "2"), ("empty", ""))


# -- the synchronous path answers as the server does ----------------------------------------------


class DownStore(MemoryStore):
    """A memory store whose status writes fail: the database went away."""

    def apply_status(self, event: StatusEvent) -> Any:
        raise StoreError("apply_status: database is unreachable")

    def apply_statuses(self, events: Sequence[StatusEvent]) -> Any:
        raise StoreError("apply_statuses: database is unreachable")


class QuietPlugin:
    """Registers a provider that takes no webhooks."""

    @smskit.hookimpl
    def register_providers(self, register: Callable[[str, Any], None]) -> None:
        register("quiet", lambda settings: Quiet())


def make_kit(store_down: bool) -> SmsKit:
    settings = Settings.load(environ={}, webhook_secret=SECRET, webhook_max_bytes="1024")
    plugins = Plugins(settings, entry_points=False)
    plugins.register(QuietPlugin(), name="quiet-plugin")
    store = DownStore() if store_down else MemoryStore()
    store.add_messages([sent_message()])
    return SmsKit(settings, store=store, provider=LoopbackProvider(), plugins=plugins)


def like_the_odoo_controller(kit: SmsKit, provider: str, kind: str, query: Dict[str, str],
                             headers: Dict[str, str], body: bytes) -> WebhookResponse:
    """What the example Odoo controller does with a request Werkzeug read."""
    hook = WebhookRequest(provider=provider, kind=kind, method="POST",
                          headers={**headers, "Content-Length": str(len(body))},
                          query=list(query.items()), client_host="127.0.0.1")
    refused = authenticate(WebhookPolicy.from_settings(kit.settings), hook)
    return refused or receive(kit, hook.with_body(body))


STATUS = json.dumps({"message_id": MESSAGE_ID, "state": "delivered"}).encode()
CASES = {
    "no token": ("loopback", "status", {}, JSON_HEADERS, STATUS, False),
    "wrong token": ("loopback", "status", {"token": "nope"}, JSON_HEADERS, STATUS, False),
    "unknown kind": ("loopback", "bounce", {"token": SECRET}, JSON_HEADERS, STATUS, False),
    "unknown provider": ("nosuch", "status", {"token": SECRET}, JSON_HEADERS, STATUS, False),
    "provider without webhooks": ("quiet", "status", {"token": SECRET}, JSON_HEADERS, STATUS,
                                  False),
    "wrong content type": ("loopback", "status", {"token": SECRET},
                           {"Content-Type": "text/plain"}, STATUS, False),
    "too large": ("loopback", "status", {"token": SECRET}, JSON_HEADERS,
                  json.dumps({"message_id": MESSAGE_ID, "pad": "x" * 2000}).encode(), False),
    "malformed JSON": ("loopback", "status", {"token": SECRET}, JSON_HEADERS, b"{not json",
                       False),
    "lone surrogate": ("loopback", "status", {"token": SECRET}, JSON_HEADERS,
                       b'{"message_id": "x", "state": "delivered", "note": "\\ud800"}', False),
    # The same surrogate as raw bytes: json.loads decodes them with "surrogatepass".
    "raw surrogate bytes": ("loopback", "status", {"token": SECRET}, JSON_HEADERS,
                            b'{"message_id": "x", "state": "delivered", "note": "\xed\xa0\x80"}',
                            False),
    "valid status": ("loopback", "status", {"token": SECRET}, JSON_HEADERS, STATUS, False),
    "valid reply": ("loopback", "reply", {}, {**JSON_HEADERS, "X-Smskit-Token": SECRET},
                    b'{"id": "R-1", "phone": "+5511987654321", "text": "oi"}', False),
    "store down": ("loopback", "status", {"token": SECRET}, JSON_HEADERS, STATUS, True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_odoo_path_answers_as_the_server(case: str) -> None:
    provider, kind, query, headers, body, store_down = CASES[case]
    kit = make_kit(store_down)
    with serve_in_thread(create_app(kit)) as base:
        response = httpx.post(f"{base}/webhooks/{provider}/{kind}", params=query,
                              headers=headers, content=body)
    served = (response.status_code, response.json(),
              {k: v for k, v in response.headers.items() if k in ("retry-after",
                                                                   "www-authenticate")})
    direct = like_the_odoo_controller(make_kit(store_down), provider, kind, query, headers, body)
    assert served == (direct.status, direct.body,
                      {k.lower(): v for k, v in direct.headers.items()})
    expected = {"no token": 401, "wrong token": 403, "unknown kind": 404,
                "unknown provider": 404, "provider without webhooks": 404,
                "wrong content type": 415, "too large": 413, "malformed JSON": 400,
                "lone surrogate": 400, "raw surrogate bytes": 400, "valid status": 200,
                "valid reply": 200,
                "store down": 503}[case]
    assert response.status_code == expected, response.text
    if case == "store down":
        assert response.headers["retry-after"] == RETRY_AFTER
    if case == "valid status":
        assert response.json()["applied"] == 1


@pytest.mark.parametrize("body", [
    b'{"note": "\\ud800"}',
    b'{"note": "\xed\xa0\x80"}',
    '{"note": "\ud800"}'.encode("utf-16-le", "surrogatepass"),
], ids=["escape", "utf-8 bytes", "utf-16 body"])
def test_json_holding_a_lone_surrogate_is_malformed(body: bytes) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        media.parse_json(body)


def test_json_with_accents_and_surrogate_pairs_decodes() -> None:
    escaped = rb'{"note": "cora\u00e7\u00e3o \ud83d\ude00"}'
    assert media.parse_json(escaped) == {"note": "coração 😀"}
    assert media.parse_json('{"note": "ação 😀"}'.encode()) == {"note": "ação 😀"}


def test_any_media_type_reads_json_else_a_php_form() -> None:
    assert media.match((media.JSON, media.ANY), "text/plain") == media.ANY
    assert media.match((media.JSON, media.ANY), "") == media.ANY
    assert media.match((media.JSON, media.ANY), "application/json") == media.JSON
    assert media.parse_any(b'{"a": [1]}') == {"a": [1]}
    body = (b"id=r&messages%5B0%5D%5Bid%5D=u1&messages[0][status_code]=3&messages[1][id]=u2"
            b"&tags[]=a&tags[]=b&sparse[2]=x&sparse[0]=y&z=1&z[k]=2&w[k]=1&w=3&plain[=1")
    assert media.parse_any(body) == {
        "id": "r", "messages": [{"id": "u1", "status_code": "3"}, {"id": "u2"}],
        "tags": ["a", "b"],  # [] appends
        "sparse": {"2": "x", "0": "y"},  # not 0, 1, 2... in order: an object, as PHP writes it
        "z": {"k": "2"}, "w": "3",  # a later field wins
        "plain[": "1"}  # not base[key]: a plain name
    assert media.parse_any(b"") == {}
    for malformed, reason in ((b"hello", "neither JSON"), (b"caf\xe9=1", "neither JSON"),
                              (b'{"a": 1', "Expecting"),  # opens like JSON: never a form
                              (b"a" + b"[b]" * media.MAX_DEPTH + b"=1", "deeper than")):
        with pytest.raises(ValueError, match=reason):
            media.parse_any(malformed)
    assert media.parse_any(b"a" + b"[b]" * (media.MAX_DEPTH - 1) + b"=1")  # at the limit
