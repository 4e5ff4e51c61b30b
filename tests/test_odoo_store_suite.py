"""The shipped store suite (:mod:`smskit.testing.stores`) on the Odoo store, over RPC and in
process.

Every guarantee of :mod:`smskit.store.base` holds on the Odoo store because the sidecar SQL
store keeps smskit's state; these runs prove that the Odoo side (rows, partners, notes,
``phone.blacklist``) never breaks one of them, with the fake Odoo answering every call. The
SQL-only tests of tests/test_store.py (WAL, migrations, processes sharing a file, URLs) do not
apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from odoo_fake import OdooServer, fake_odoo, make_store, odoo_server  # noqa: F401 - fixtures
from smskit.store.base import Store
from smskit.testing.stores.messages import get_many_find_and_list
from smskit.testing.stores.suite import StoreSuite
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo
from test_store import fresh_sqlite_url, migrated_sqlite  # noqa: F401 - fixture


class TestOdooStoreSuite(StoreSuite):
    """Every check of the shipped suite on an Odoo store with a SQLite sidecar."""

    #: The sidecar gives the Odoo store every optional part: a missing one must fail.
    parts = ("outreach", "links", "stats")

    @pytest.fixture(params=["rpc", "env"])
    def store(self, request: pytest.FixtureRequest,
              odoo_server: OdooServer,  # noqa: F811
              fake_odoo: FakeOdoo,  # noqa: F811
              migrated_sqlite: Path,  # noqa: F811
              tmp_path: Path) -> Iterator[Store]:
        """An Odoo store on a fresh fake (sms_base_sr), over odoorpc or over an ``env``."""
        sidecar = fresh_sqlite_url(migrated_sqlite, tmp_path, "sidecar.db")
        made = make_store(odoo_server, tmp_path, via=request.param, sidecar=sidecar)
        yield made
        pending = made.journal.count()
        failed = made.journal.failed()
        made.close()
        # whatever the check did, every Odoo write went through and none was refused
        assert pending == 0
        assert failed == []


def test_the_suite_ran_on_odoo_rows(odoo_server: OdooServer,  # noqa: F811
                                    fake_odoo: FakeOdoo, tmp_path: Path) -> None:  # noqa: F811
    made = make_store(odoo_server, tmp_path)
    try:
        get_many_find_and_list(made)
        rows = fake_odoo.records("sms.message")
        assert {r["provider_reference"] for r in rows} == {m.id for m in made.list_messages()}
        assert {r["state"] for r in rows} == {"outgoing", "sent"}
        assert isinstance(made, OdooStore)
    finally:
        made.close()
