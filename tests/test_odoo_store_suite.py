"""The shared store suite (tests/test_store.py) on the Odoo store, over RPC and in process.

Every guarantee of :mod:`smskit.store.base` holds on the Odoo store because the sidecar SQL
store keeps smskit's state; these runs prove that the Odoo side (rows, partners, notes,
``phone.blacklist``) never breaks one of them, with the fake Odoo answering every call.
The SQL-only tests (WAL, migrations, processes sharing a file, URLs) do not apply.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterator

import pytest

import test_store as suite
from odoo_fake import fake_odoo, make_store, odoo_server  # noqa: F401 - fixtures
from smskit.store.base import Store
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo

#: Suite tests that are about the SQL store's own machinery, not the Store protocol.
EXCLUDED: frozenset = frozenset()


@pytest.fixture(params=["rpc", "env"])
def store(request: pytest.FixtureRequest, odoo_server, fake_odoo: FakeOdoo,  # noqa: F811
          tmp_path: Path) -> Iterator[Store]:
    """An Odoo store on a fresh fake (sms_base_sr), over odoorpc or over an ``env``."""
    made = make_store(odoo_server, tmp_path, via=request.param)
    assert isinstance(made, Store)
    yield made
    pending = made.journal.count()
    failed = made.journal.failed()
    made.close()
    # whatever the test did, every Odoo write went through and none was refused
    assert pending == 0
    assert failed == []


for _name, _test in list(vars(suite).items()):
    if (_name.startswith("test_") and callable(_test) and _name not in EXCLUDED
            and "store" in inspect.signature(_test).parameters):
        globals()[_name] = _test


def test_the_suite_ran_on_odoo_rows(odoo_server, fake_odoo: FakeOdoo,  # noqa: F811
                                    tmp_path: Path) -> None:
    made = make_store(odoo_server, tmp_path)
    try:
        suite.test_get_many_find_and_list(made)
        rows = fake_odoo.records("sms.message")
        assert {r["provider_reference"] for r in rows} == {m.id for m in made.list_messages()}
        assert {r["state"] for r in rows} == {"outgoing", "sent"}
        assert isinstance(made, OdooStore)
    finally:
        made.close()
