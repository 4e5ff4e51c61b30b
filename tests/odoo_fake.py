"""Fixtures for the Odoo and ChatRoom tests: one fake Odoo server per session, a fresh fake
database per test, and Odoo stores over RPC (odoorpc) or over an in-process ``env``.

Import the fixtures into a test module with ``from odoo_fake import *``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from smskit.config import Settings
from smskit.testing.servers import serve_in_thread
from smskit_odoo.adapter import EnvAdapter, OdooAdapter
from smskit_odoo.store import OdooStore, open_store
from smskit_odoo.testing import FakeOdoo, create_app, odoo_url
from smskit_odoo.testing.env import FakeEnv, fake_call_kw

__all__ = ["OdooServer", "fake_odoo", "make_store", "odoo_server", "odoo_store"]


class OdooServer:
    """One uvicorn serving whichever :class:`FakeOdoo` the current test installed."""

    def __init__(self) -> None:
        self.fake = FakeOdoo()
        self.base_url = ""
        self._app: Any = create_app(self.fake)

    def use(self, fake: FakeOdoo) -> FakeOdoo:
        """Serve ``fake`` from now on."""
        self.fake = fake
        self._app = create_app(fake)
        return fake

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self._app(scope, receive, send)

    def url(self, **options: str) -> str:
        """The ``odoo://`` URL of the current fake."""
        return odoo_url(self.base_url, self.fake, **options)


@pytest.fixture(scope="session")
def odoo_server() -> Iterator[OdooServer]:
    """The fake Odoo's HTTP server (one for the whole run)."""
    server = OdooServer()
    with serve_in_thread(server) as base_url:
        server.base_url = base_url
        yield server


@pytest.fixture
def fake_odoo(odoo_server: OdooServer, request: pytest.FixtureRequest) -> FakeOdoo:
    """A fresh fake database (``sms_base_sr``; parametrise ``fake_odoo`` indirectly with a
    dict of :class:`FakeOdoo` options to change it)."""
    options: Dict[str, Any] = dict(getattr(request, "param", None) or {})
    return odoo_server.use(FakeOdoo(**options))


def make_store(server: OdooServer, tmp_path: Path, *, via: str = "rpc",
               user: str = "admin", password: str = "admin", sidecar: Optional[str] = None,
               **values: str) -> OdooStore:
    """An Odoo store on the current fake: over RPC, or over the in-process ``env``."""
    values.setdefault("odoo_sidecar_url", sidecar or f"sqlite:///{tmp_path / 'sidecar.db'}")
    settings = Settings.load(environ={}, **values)
    adapter: Optional[OdooAdapter] = None
    if via == "env":
        uid = server.fake.users[user][1]
        adapter = EnvAdapter(FakeEnv(server.fake, uid), autocommit=True, call_kw=fake_call_kw)
    return open_store(server.url(user=user, password=password), settings, adapter=adapter)


@pytest.fixture
def odoo_store(odoo_server: OdooServer, fake_odoo: FakeOdoo,
               tmp_path: Path) -> Iterator[OdooStore]:
    """An Odoo store over RPC on a fresh ``sms_base_sr`` fake."""
    store = make_store(odoo_server, tmp_path)
    yield store
    store.close()
