"""Fuzzing the reference webhook server (uvicorn on 127.0.0.1, SQLite store) with hypothesis.

Random and mutated Kolmeya payloads (nested and flat statuses, request rejections, replies, lists
of them), random JSON, random bytes and truncated JSON, random headers and content types, with
the right token, a wrong one or none, on known and unknown routes, and bodies over the size cap
(declared or streamed). Whatever arrives:

* the answer is never a 5xx and never shows a traceback, and the server logs no error
  (values that once gave 500 are drawn on purpose: ``"status_code": "²"``, which ``int()``
  refuses although ``str.isdigit`` accepts it; dates the UTC conversion pushes out of the
  calendar; nesting up to the decoder's own recursion limit; huge numbers; U+0000, which
  PostgreSQL cannot store);
* a refused request (4xx) writes nothing: every table of the store is unchanged;
* auth comes first: without the right token the answer is 401/403 (404/405 for a route that
  does not exist), and a well-formed callback with the right token is stored (200).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import Message, State, utcnow
from smskit.server.app import create_app
from smskit.store.sql import SqlStore
from smskit.testing.servers import serve_in_thread

SECRET = "fuzz-secret-Tok3n"
MAX_BYTES = 4096
SEEDED = [(f"FUZZ{i:022d}", f"kol-{i:04d}") for i in range(12)]
STATUS_TEXT = {1: "tentando enviar", 2: "enviado", 3: "entregue", 4: "não entregue",
               5: "rejeitado", 6: "expirada"}
ROUTES = ["/webhooks/kolmeya/status", "/webhooks/kolmeya/reply"]
BAD_KINDS = ["/webhooks/kolmeya/STATUS", "/webhooks/kolmeya/other"]
UNKNOWN_PROVIDER = "/webhooks/nobody/status"
NO_ROUTE = ["/webhooks/kolmeya", "/webhooks//status", "/hooks/kolmeya/status"]
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON",
              "application/vnd.kolmeya+json"]
OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
               "application/xml", "json", ""]
GOOD_TOKENS = ["query", "header", "bearer"]
BAD_TOKENS = ["none", "wrong-query", "wrong-header", "wrong-bearer", "right-and-wrong",
              "basic-only"]


class ErrorLog(logging.Handler):
    """Keeps every record at ERROR or above, or carrying an exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


class Server:
    """The running server, its store file and its error log."""

    def __init__(self, base: str, db: Path, errors: ErrorLog) -> None:
        self.base = base
        self.db = db
        self.errors = errors
        self.http = httpx.Client(base_url=base, timeout=10)

    def snapshot(self) -> str:
        """A digest of every row of every table of the store."""
        digest = hashlib.sha256()
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            for table in tables:
                digest.update(table.encode())
                for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                    digest.update(repr(row).encode())
        return digest.hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("fuzz") / "smskit.db"
    store = SqlStore(f"sqlite:///{db}")
    now = utcnow()
    store.add_messages(
        Message(id=mid, phone=f"+55119{87654300 + i}", body="Olá! Sua fatura vence hoje.",
                state=State.SENT, provider="kolmeya", provider_message_id=pid,
                provider_request_id="req-1", created_at=now, sent_at=now, segments=1)
        for i, (mid, pid) in enumerate(SEEDED))
    values = Settings.load(environ={}, provider="kolmeya", kolmeya_token="unused",
                           kolmeya_base_url="http://127.0.0.1:9/api/v1", webhook_secret=SECRET,
                           webhook_max_bytes=str(MAX_BYTES))
    kit = SmsKit(values, store=store)
    errors = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("", "smskit", "uvicorn", "uvicorn.error",
                                                    "starlette")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        with serve_in_thread(create_app(kit)) as base:
            running = Server(base, db, errors)
            yield running
            running.http.close()
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
        kit.close()


# -- payloads -------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@st.composite
def valid_payloads(draw: st.DrawFn) -> Any:
    """A well-formed Kolmeya callback about the seeded messages (or a list of them)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.lists(valid_objects(), min_size=1, max_size=3))
    return draw(valid_objects())


@st.composite
def valid_objects(draw: st.DrawFn) -> Dict[str, Any]:
    """One well-formed Kolmeya callback object."""
    mid, pid = draw(st.sampled_from(SEEDED))
    code = draw(st.integers(1, 6))
    shape = draw(st.sampled_from(["nested", "flat", "rejection", "reply", "flat-reply"]))
    if shape == "nested":
        return {"id": "req-1", "reference": "batch-1", "messages": [
            {"id": pid, "reference": mid, "status_code": code, "status": STATUS_TEXT[code]}]}
    if shape == "flat":
        return {"id": pid, "reference": mid, "status": STATUS_TEXT[code], "status_code": code,
                "phone": 5511987654321}
    if shape == "rejection":
        return {"id": "req-1", "reference": "batch-1", "status": "rejected",
                "status_message": "Conteúdo não permitido"}
    if shape == "reply":
        return {"reply": {"id": draw(st.integers(1, 10**6)), "reply": draw(st.sampled_from(
            ["Sim", "SAIR", "obrigado!", "Não quero mais 😠"])),
            "received_at": "15/11/2025 10:30", "message": {
                "id": pid, "reference": mid, "phone": "11987654321", "content": "Olá!"}}}
    return {"phone": "5511987654321", "message": draw(st.text(min_size=1, max_size=20)),
            "reference": mid, "data": "2025-11-15 10:30:00"}


def _slots(value: Any, out: List[Tuple[Any, Any]]) -> List[Tuple[Any, Any]]:
    """Every (container, key) of a JSON value, depth first. Walked without recursion: a value
    nested a thousand levels deep (the "deep" edit) would otherwise hit the recursion limit at
    a depth that depends on the caller's stack, which hypothesis sees as a strategy that draws
    differently from one run to the next."""
    def children(item: Any) -> List[Tuple[Any, Any]]:
        if isinstance(item, dict):
            return [(item, key) for key in list(item)]
        if isinstance(item, list):
            return [(item, index) for index in range(len(item))]
        return []

    stack = children(value)[::-1]
    while stack:
        container, key = stack.pop()
        out.append((container, key))
        stack.extend(children(container[key])[::-1])
    return out


#: Values that reach the parser and the store in unusual shapes (each once gave a 500 or a 503).
EDGE_VALUES: List[Any] = [
    10**30, -(10**30), "9" * 400, "9" * 5000, "\x00", "a\x00b", "\ud800", 1e308, -1e308,
    "\u00b2", "\u0663", "\uff13", " 3 ", "3.0", 3.0, 2**31, -(2**31) - 1,
    "01/01/0001 00:00", "31/12/9999 23:59", "9999-12-31T23:59:59-03:00",
    "0001-01-01T00:00:00+14:00", "2025-02-30 10:00:00", "x" * 3000, "\ufffd", "\U0001f600",
]


def nested(depth: int, leaf: Any) -> Any:
    """``leaf`` inside ``depth`` levels of lists and objects (deep enough to break a decoder
    that recurses)."""
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"k": leaf}
    return leaf


@st.composite
def mutated_payloads(draw: st.DrawFn) -> Any:
    """A valid callback with a few random edits: keys dropped, values replaced or retyped."""
    payload = copy.deepcopy(draw(valid_payloads()))
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(payload, [])
        if not slots:
            return draw(json_values)
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["drop", "replace", "retype", "wrap", "huge", "huge",
                                       "deep"]))
        old = container[key]
        if action == "drop" and isinstance(container, dict):
            del container[key]
        elif action == "retype":
            container[key] = (str(old) if not isinstance(old, str)
                              else draw(st.sampled_from([0, -1, 3.5, None, True, [], {}])))
        elif action == "wrap":
            container[key] = [old]
        elif action == "huge":
            container[key] = draw(st.sampled_from(EDGE_VALUES))
        elif action == "deep":
            container[key] = nested(draw(st.integers(1, 1200)), old)
        else:
            container[key] = draw(json_values)
    return payload


def _dumps(value: Any, ensure_ascii: bool) -> str:
    """JSON text of ``value``, however deeply it nests (``json.dumps`` recurses)."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii)
    finally:
        sys.setrecursionlimit(limit)


@st.composite
def bodies(draw: st.DrawFn) -> Tuple[str, bytes]:
    """A body and what it is (``valid`` bodies are well-formed callbacks)."""
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "json", "bytes", "truncated"]))
    if kind == "valid":
        return kind, json.dumps(draw(valid_payloads()), ensure_ascii=False).encode()
    if kind == "mutated":
        text = _dumps(draw(mutated_payloads()), ensure_ascii=draw(st.booleans()))
        return kind, text.encode("utf-8", "surrogatepass")
    if kind == "json":
        return kind, json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return kind, draw(st.binary(max_size=200))
    text = json.dumps(draw(valid_payloads()))
    cut = draw(st.integers(0, len(text)))
    return kind, (text[:cut] + draw(st.text(max_size=4))).encode("utf-8", "surrogatepass")


header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in {"content-type", "content-length", "host", "authorization",
                                      "x-smskit-token", "transfer-encoding", "connection",
                                      "expect", "content-encoding"})
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.strip)


def token_parts(mode: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """(query parameters, headers) presenting the token as ``mode`` says."""
    wrong = SECRET + "x"
    return {
        "query": ({"token": SECRET}, {}),
        "header": ({}, {"X-Smskit-Token": SECRET}),
        "bearer": ({}, {"Authorization": f"Bearer {SECRET}"}),
        "none": ({}, {}),
        "wrong-query": ({"token": wrong}, {}),
        "wrong-header": ({}, {"X-Smskit-Token": wrong}),
        "wrong-bearer": ({}, {"Authorization": f"Bearer {wrong}"}),
        "right-and-wrong": ({"token": SECRET}, {"X-Smskit-Token": wrong}),
        "basic-only": ({}, {"Authorization": f"Basic {SECRET}"}),
    }[mode]


def check(server: Server, response: httpx.Response, before: str) -> None:
    """No 5xx, no traceback, no logged error; nothing written when refused."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    assert not server.errors.records, [r.getMessage() for r in server.errors.records]
    if response.status_code >= 400:
        assert server.snapshot() == before, f"a refused request ({response.status_code}) wrote"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), route=st.sampled_from(
    [*ROUTES, *ROUTES, *BAD_KINDS, UNKNOWN_PROVIDER, *NO_ROUTE]), method=st.sampled_from(
    ["POST"] * 8 + ["GET", "PUT", "DELETE"]), token=st.sampled_from(GOOD_TOKENS + BAD_TOKENS),
    content_type=st.sampled_from([*JSON_TYPES, *OTHER_TYPES, None]),
    extra=st.dictionaries(header_names, header_values, max_size=4))
def test_fuzzed_callbacks_never_fail_and_refusals_write_nothing(
        server: Server, body: Tuple[str, bytes], route: str, method: str, token: str,
        content_type: Optional[str], extra: Dict[str, str]) -> None:
    kind, content = body
    params, headers = token_parts(token)
    headers = {**extra, **headers}
    if content_type is not None:
        headers["Content-Type"] = content_type
    before = server.snapshot()
    response = server.http.request(method, route, params=params, headers=headers,
                                   content=content)
    check(server, response, before)
    if route in NO_ROUTE:
        assert response.status_code == 404
    elif method != "POST":
        assert response.status_code == 405
    elif route in BAD_KINDS:
        assert response.status_code == 404  # before authentication: it names no webhook
    elif token not in GOOD_TOKENS:
        assert response.status_code in (401, 403)
    elif route == UNKNOWN_PROVIDER:
        assert response.status_code == 404
    elif response.status_code == 415:
        # Kolmeya's media type is not known: its callbacks are read whatever the type says
        raise AssertionError(f"Content-Type {content_type!r} refused")
    elif kind == "valid":
        assert response.status_code == 200, response.text
        assert response.json()["statuses"] + response.json()["inbound"] >= 1


#: Per kind of field, values that once broke the parser or the store (500, or 503 forever).
EDGES_BY_KEY: Dict[str, List[Any]] = {
    "status_code": ["\u00b2", "\u0663", "\uff13", 10**30, -(10**30), "9" * 5000, 1e308,
                    2**31, " 3 ", "3.0", -1],
    "date": ["01/01/0001 00:00", "31/12/9999 23:59", "9999-12-31T23:59:59-03:00",
             "0001-01-01T00:00:00+14:00", "2025-02-30 10:00:00", 1e308, "\x00", "9" * 400],
    "id": ["\x00", "a\x00b", "x" * 3000, 10**300, 1e308, "\ufffd", "\U0001f600", ""],
    "phone": ["1" * 400, "\x00", "\u0661\u0661\u0669\u0668\u0667\u0666\u0665\u0664"
              "\u0663\u0662\u0661", 10**30, "+55 (11) 9\x008765-4321"],
    "text": ["\x00", "me\x00exemplo.com", "\U0001f600", "x" * 3000, "\ud83d"],
}
_KEYS = {"status_code": "status_code", "delivered_at": "date", "received_at": "date",
         "data": "date", "updated_at": "date", "id": "id", "reference": "id", "phone": "phone",
         "reply": "text", "message": "text", "status": "text", "status_message": "text"}


@st.composite
def edge_payloads(draw: st.DrawFn) -> Any:
    """A valid callback with one to three fields set to values that once broke the server,
    or a value nested deeper than a recursive decoder can go."""
    payload = copy.deepcopy(draw(valid_objects()))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 5)) == 0:
            container, key = draw(st.sampled_from(_slots(payload, [])))
            container[key] = nested(draw(st.integers(30, 1200)), container[key])
            continue
        key = draw(st.sampled_from(sorted(_KEYS)))
        holders = [c for c, k in _slots(payload, []) if k == key and isinstance(c, dict)]
        holder = draw(st.sampled_from(holders)) if holders else payload
        holder[key] = draw(st.sampled_from(EDGES_BY_KEY[_KEYS[key]]))
    return payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=edge_payloads(), route=st.sampled_from(ROUTES), ascii_only=st.booleans())
def test_well_formed_callbacks_with_edge_values_never_give_5xx(
        server: Server, payload: Any, route: str, ascii_only: bool) -> None:
    content = _dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    before = server.snapshot()
    response = server.http.post(route, params={"token": SECRET}, content=content,
                                headers={"Content-Type": "application/json"})
    check(server, response, before)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(MAX_BYTES + 1, 20 * MAX_BYTES), streamed=st.booleans(),
       token=st.sampled_from(["query", "none"]))
def test_oversize_bodies_are_refused_and_write_nothing(server: Server, size: int,
                                                       streamed: bool, token: str) -> None:
    mid, pid = SEEDED[0]
    payload = {"id": "req-1", "messages": [{"id": pid, "reference": mid, "status_code": 3}],
               "padding": "x" * size}
    content = json.dumps(payload).encode()
    params, headers = token_parts(token)
    before = server.snapshot()
    response = server.http.post(ROUTES[0], params=params,
                                headers={**headers, "Content-Type": "application/json"},
                                content=_chunks(content, 1000) if streamed else content)
    check(server, response, before)
    assert response.status_code == (413 if token == "query" else 401)


@pytest.mark.parametrize("framing", [
    b"Content-Length: abc\r\n", b"Content-Length: -1\r\n", b"Content-Length: 99999999999999\r\n",
    b"Content-Length: 5\r\nContent-Length: 7\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Content-Length: 2\r\n",
])
def test_malformed_http_framing_is_refused_without_a_write(server: Server,
                                                           framing: bytes) -> None:
    host, port = server.base.rsplit("//", 1)[1].split(":")
    body = json.dumps({"id": "req-1", "messages": [
        {"id": SEEDED[1][1], "reference": SEEDED[1][0], "status_code": 3}]}).encode()
    request = (b"POST " + ROUTES[0].encode() + b"?token=" + SECRET.encode() + b" HTTP/1.1\r\n"
               b"Host: " + host.encode() + b"\r\nContent-Type: application/json\r\n" + framing
               + b"Connection: close\r\n\r\n" + body)
    before = server.snapshot()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    if answer:  # the server may also just close the connection
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer
        assert status >= 400, answer
        assert b"Traceback" not in answer
    assert server.snapshot() == before
    assert not server.errors.records, [r.getMessage() for r in server.errors.records]
