"""A fake Odoo 15 for tests, demos and benchmarks: models, a JSON-RPC server, an ``env``.

::

    from smskit.testing.servers import serve_in_thread
    from smskit_odoo.testing import FakeOdoo, create_app

    fake = FakeOdoo("sms_base_sr")
    with serve_in_thread(create_app(fake)) as base_url:
        ...  # odoo://admin:admin@127.0.0.1:<port>/smskit

``create_app`` needs Starlette (``pip install 'smskit-sdk[server]'``); it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smskit_odoo.testing.odoo import ADMIN_UID, FakeOdoo
from smskit_odoo.testing.orm import FakeError

if TYPE_CHECKING:
    from smskit_odoo.testing.server import create_app

__all__ = ["ADMIN_UID", "FakeError", "FakeOdoo", "create_app", "odoo_url"]


def odoo_url(base_url: str, fake: FakeOdoo, *, user: str = "admin",
             password: str = "admin",  # noqa: S107 - the fake's demo user
             **options: str) -> str:
    """The ``odoo://`` URL of a fake served at ``base_url`` (``http://127.0.0.1:port``)."""
    hostport = base_url.split("://", 1)[1].rstrip("/")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"odoo://{user}:{password}@{hostport}/{fake.database}" + (f"?{query}" if query else "")


def __getattr__(name: str) -> Any:
    """``create_app`` on first use (it imports Starlette)."""
    if name == "create_app":
        from smskit_odoo.testing.server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
