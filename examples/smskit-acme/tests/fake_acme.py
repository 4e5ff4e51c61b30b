"""A fake Acme gateway on 127.0.0.1 for the tests: the part of Acme's API the provider uses,
in memory, with the standard library's HTTP server in a thread.

It keeps every batch it accepted (by reference), refuses the numbers in ``refused``, can hold
its answer to sends after accepting them (:meth:`FakeAcme.hanging_after_accept`), and builds
the signed callbacks Acme posts (:meth:`FakeAcme.status_callback`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple
from urllib.parse import urlencode

from smskit_acme.provider import sign

API_KEY = "test-api-key"
WEBHOOK_KEY = "test-webhook-key"


class FakeAcme:
    """Acme's API at :attr:`url` (``with FakeAcme() as acme: ...``)."""

    def __init__(self, api_key: str = API_KEY, webhook_key: str = WEBHOOK_KEY) -> None:
        self.api_key = api_key
        self.webhook_key = webhook_key
        self.batches: Dict[str, Dict[str, Any]] = {}  # by our reference
        self.messages: Dict[str, Dict[str, Any]] = {}  # by Acme's id
        self.refused: Set[str] = set()
        self.balance = Decimal("50.00")
        self.sends = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._hold: Optional[threading.Event] = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        """The API's base URL (what ``acme_base_url`` is set to)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeAcme:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hold is not None:
            self._hold.set()
        self._server.shutdown()
        self._server.server_close()

    @contextlib.contextmanager
    def hanging_after_accept(self) -> Iterator[None]:
        """Sends are stored, then their answer is held until the block ends (the client
        times out first: it cannot know whether Acme took the batch)."""
        self._hold = threading.Event()
        try:
            yield
        finally:
            self._hold.set()
            self._hold = None

    def status_callback(self, url: str, message_id: str, status: str = "delivered",
                        ) -> Tuple[Dict[str, str], bytes]:
        """The headers and form Acme posts to ``url`` when its message ``message_id`` reaches
        ``status``, signed with the webhook key."""
        message = self.messages[message_id]
        fields = [("message", message_id), ("ref", message["ref"]), ("status", status)]
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Acme-Signature": sign(self.webhook_key, url, fields)}
        return headers, urlencode(fields).encode()

    # -- the API ----------------------------------------------------------------------------
    def send(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        """``POST /batches``: accept the batch, refusing the numbers of :attr:`refused`."""
        with self._lock:
            self.sends += 1
            answer: Dict[str, Any] = {"batch": f"B{next(self._ids)}", "messages": []}
            for item in body["messages"]:
                if item["to"] in self.refused:
                    answer["messages"].append({"ref": item["ref"], "status": "refused",
                                               "reason": "blocked number"})
                    continue
                message = {"id": f"M{next(self._ids)}", "ref": item["ref"], "to": item["to"],
                           "text": item["text"], "status": "queued"}
                self.messages[message["id"]] = message
                answer["messages"].append({"ref": item["ref"], "id": message["id"],
                                           "status": "queued"})
            self.batches[body["reference"]] = answer
        return answer

    def hold_answer(self) -> None:
        """Inside :meth:`hanging_after_accept`: wait until the block ends."""
        hold = self._hold
        if hold is not None:
            hold.wait(30)  # accepted; the answer comes too late for the client

    def sent_texts(self) -> List[str]:
        """The text of every message accepted, in order."""
        with self._lock:
            return [m["text"] for m in self.messages.values()]


def _handler(acme: FakeAcme) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet tests

        def _answer(self, status: int, body: Optional[Any] = None) -> None:
            data = json.dumps(body if body is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):  # a client that timed out has gone
                self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {acme.api_key}":
                return True
            self._answer(401, {"error": "bad api key"})
            return False

        def do_POST(self) -> None:
            if not self._authorised():
                return
            if self.path != "/v1/batches":
                self._answer(404, {"error": "no such endpoint"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            answer = acme.send(json.loads(self.rfile.read(length)))
            acme.hold_answer()
            self._answer(200, answer)

        def do_GET(self) -> None:
            if not self._authorised():
                return
            parts = self.path.strip("/").split("/")
            if parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in acme.batches:
                self._answer(200, acme.batches[parts[2]])
            elif parts[:2] == ["v1", "messages"] and len(parts) == 3 \
                    and parts[2] in acme.messages:
                message = acme.messages[parts[2]]
                self._answer(200, {k: message[k] for k in ("id", "ref", "status")})
            elif parts == ["v1", "balance"]:
                self._answer(200, {"balance": str(acme.balance)})
            else:
                self._answer(404, {"error": "not found"})

    return Handler
