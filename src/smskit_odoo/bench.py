"""Measurements for the benchmark harness (``benchmarks/run.py``).

:func:`odoo_rpc_per_1000` counts the JSON-RPC round trips a bulk send of 1000 messages costs
through an :class:`~smskit_odoo.store.OdooStore`, against the fake Odoo served on loopback
(so it needs Starlette and uvicorn: ``pip install 'smskit-sdk[server,odoo]'``). The connection,
the login and the schema detection are warmed up first and not counted: they happen once
per process, not per send.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict

import attrs

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.providers.loopback import LoopbackProvider
from smskit.testing.servers import serve_in_thread

__all__ = ["RpcCount", "measure_bulk_rpc", "odoo_rpc_per_1000"]


@attrs.frozen(kw_only=True)
class RpcCount:
    """Round trips of one bulk send: total, and per ``model.method``."""

    messages: int
    sent: int
    round_trips: int
    by_call: Dict[str, int]


def measure_bulk_rpc(count: int = 1000, *, variant: str = "sms_base_sr",
                     partners: int = 100, notes: str = "all") -> RpcCount:
    """Send ``count`` messages (``partners`` of the numbers belong to Odoo partners, so
    chatter notes are part of the cost: ``notes`` is the ``odoo_notes`` setting, ``all`` by
    default so the note for each sent message is counted even where sms_base_sr posts its
    own) and count the round trips to Odoo."""
    from smskit_odoo.store import open_store
    from smskit_odoo.testing import FakeOdoo, create_app, odoo_url

    fake = FakeOdoo(variant)
    phones = [f"+55119{10_000_000 + i:08d}" for i in range(count)]
    for phone in phones[:partners]:
        fake.add("res.partner", {"name": f"Cliente {phone[-4:]}", "mobile": phone})
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(fake)) as base:
        settings = Settings.load(environ={}, odoo_notes=notes,
                                 odoo_sidecar_url=f"sqlite:///{Path(tmp) / 'sidecar.db'}")
        store = open_store(odoo_url(base, fake), settings)
        kit = SmsKit(settings, store=store, provider=LoopbackProvider(max_batch=1000))
        try:
            store.describe()  # connect, log in, detect the schema: once per process
            store.is_blacklisted(phones[0])  # the phone.blacklist cache: once a minute
            before = store.session.adapter.round_trips
            first = len(fake.requests)
            summary = kit.send_many(phones, "Olá, sua fatura vence amanhã.")
            trips = store.session.adapter.round_trips - before
            by_call: Dict[str, int] = {}
            for request in fake.requests[first:]:
                key = f"{request.get('model')}.{request.get('method')}"
                by_call[key] = by_call.get(key, 0) + 1
            return RpcCount(messages=count, sent=summary.sent, round_trips=trips,
                            by_call=by_call)
        finally:
            kit.close()


def odoo_rpc_per_1000() -> float:
    """Round trips to Odoo per 1000 messages of a bulk send (what ``run.py`` reports as
    ``odoo_rpc_per_1000``)."""
    result = measure_bulk_rpc(1000)
    return result.round_trips * 1000 / result.messages
