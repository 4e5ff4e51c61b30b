"""The fake Odoo over HTTP: the JSON-RPC endpoints odoorpc and the web client call.

* ``POST /web/webclient/version_info``: what ``odoorpc.ODOO()`` asks first;
* ``POST /jsonrpc``: services ``common`` (``login``, ``version``) and ``object``
  (``execute``, ``execute_kw``): what odoorpc 0.8+ uses for login and model calls;
* ``POST /web/session/authenticate`` and ``POST /web/dataset/call_kw[/...]`` (model, method,
  args, kwargs, with the session cookie): the web client's path, used by older odoorpc.

Errors are Odoo's JSON-RPC error objects (``data.name`` such as
``odoo.exceptions.ValidationError``) with HTTP 200. ``fake.down = True`` answers 503 like a
proxy in front of a stopped Odoo. Every request is recorded in ``fake.requests``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Dict, List, Tuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from smskit_odoo.testing.odoo import FakeOdoo
from smskit_odoo.testing.orm import FakeError

__all__ = ["create_app"]

_VERSION = {"server_version": "15.0", "server_version_info": [15, 0, 0, "final", 0, ""],
            "server_serie": "15.0", "protocol_version": 1}


def _answer(request_id: Any, result: Any = None, error: Any = None) -> JSONResponse:
    body: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    return JSONResponse(body)


def create_app(fake: FakeOdoo) -> Starlette:
    """The ASGI app serving ``fake``."""

    async def parse(request: Request) -> Tuple[Any, Dict[str, Any]]:
        payload = json.loads(await request.body() or b"{}")
        return payload.get("id"), payload.get("params") or {}

    def record(path: str, **info: Any) -> None:
        with fake.orm.lock:
            fake.requests.append(dict(path=path, **info))

    async def version_info(request: Request) -> Response:
        if fake.down:
            return PlainTextResponse("503 Service Unavailable", status_code=503)
        request_id, _ = await parse(request)
        record("/web/webclient/version_info")
        return _answer(request_id, dict(_VERSION))

    async def jsonrpc(request: Request) -> Response:
        if fake.down:
            return PlainTextResponse("503 Service Unavailable", status_code=503)
        request_id, params = await parse(request)
        service, method = params.get("service"), params.get("method")
        args: List[Any] = list(params.get("args") or [])
        info: Dict[str, Any] = {"service": service, "rpc": method}
        try:
            if service == "common" and method == "version":
                record("/jsonrpc", **info)
                return _answer(request_id, dict(_VERSION))
            if service == "common" and method in ("login", "authenticate"):
                record("/jsonrpc", **info)
                return _answer(request_id, fake.login(*args[:3]))
            if service == "object" and method in ("execute", "execute_kw"):
                db, uid, password, model, model_method = args[:5]
                info.update(model=model, method=model_method)
                record("/jsonrpc", **info)
                fake.check_password(db, uid, password)
                if method == "execute_kw":
                    call_args = list(args[5]) if len(args) > 5 else []
                    kwargs = dict(args[6]) if len(args) > 6 and args[6] else {}
                else:
                    call_args, kwargs = list(args[5:]), {}
                return _answer(request_id, fake.execute_kw(uid, model, model_method, call_args,
                                                           kwargs))
            record("/jsonrpc", **info)
            raise FakeError("builtins.NameError", f"unknown service/method {service}.{method}")
        except FakeError as exc:
            return _answer(request_id, error=exc.to_rpc())

    async def authenticate(request: Request) -> Response:
        if fake.down:
            return PlainTextResponse("503 Service Unavailable", status_code=503)
        request_id, params = await parse(request)
        record("/web/session/authenticate")
        try:
            uid = fake.login(str(params.get("db")), str(params.get("login")),
                             str(params.get("password")))
            if not uid:
                raise FakeError("odoo.exceptions.AccessDenied", "Access Denied")
        except FakeError as exc:
            return _answer(request_id, error=exc.to_rpc())
        session = secrets.token_hex(20)
        fake.sessions[session] = uid
        response = _answer(request_id, fake.session_info(uid))
        response.set_cookie("session_id", session, httponly=True)
        return response

    async def call_kw(request: Request) -> Response:
        if fake.down:
            return PlainTextResponse("503 Service Unavailable", status_code=503)
        request_id, params = await parse(request)
        model, method = str(params.get("model")), str(params.get("method"))
        record(request.url.path, model=model, method=method)
        uid = fake.sessions.get(request.cookies.get("session_id", ""))
        try:
            if uid is None:
                raise FakeError("odoo.http.SessionExpiredException", "Session expired")
            return _answer(request_id, fake.execute_kw(uid, model, method,
                                                       list(params.get("args") or []),
                                                       dict(params.get("kwargs") or {})))
        except FakeError as exc:
            return _answer(request_id, error=exc.to_rpc())

    return Starlette(routes=[
        Route("/web/webclient/version_info", version_info, methods=["POST"]),
        Route("/jsonrpc", jsonrpc, methods=["POST"]),
        Route("/web/session/authenticate", authenticate, methods=["POST"]),
        Route("/web/dataset/call_kw", call_kw, methods=["POST"]),
        Route("/web/dataset/call_kw/{path:path}", call_kw, methods=["POST"]),
    ])
