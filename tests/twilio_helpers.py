"""Helpers of the Twilio tests (the ``twilio_sim`` and ``receiver`` fixtures are in
``conftest.py``): settings pointing smskit at the simulator, and a web app recording the
callbacks it receives."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qsl

from smskit.config import Settings
from smskit_twilio.testing.simulator import DEFAULT_NUMBER, TwilioSimulator

SimServer = Tuple[TwilioSimulator, str]


def twilio_settings(sim: TwilioSimulator, base_url: str, **extra: Any) -> Settings:
    """Settings for the ``twilio`` provider against ``sim`` served at ``base_url``."""
    values = {"provider": "twilio", "twilio_base_url": base_url,
              "twilio_account_sid": sim.config.account_sid,
              "twilio_auth_token": sim.config.auth_token, "twilio_from": DEFAULT_NUMBER,
              "twilio_reconcile_grace": "0"}
    values.update({k: str(v) for k, v in extra.items() if v is not None})
    return Settings.load(environ={}, **values)


class Receiver:
    """A web app that records every request it gets (callbacks from the simulator)."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []

    def app(self) -> Any:
        """The Starlette app (answers 204 to any POST)."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def record(request: Request) -> Response:
            self.requests.append({"url": str(request.url), "headers": dict(request.headers),
                                  "body": await request.body()})
            return Response(status_code=204)

        return Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])

    def forms(self) -> List[Dict[str, str]]:
        """The form fields of every recorded request."""
        return [dict(parse_qsl(r["body"].decode(), keep_blank_values=True))
                for r in self.requests]

