"""Shared by the addon's Odoo tests (run with ``odoo15 test``: see tests/odoo15 in smskit)."""

import contextlib
import uuid
from unittest.mock import patch

from odoo.tests.common import HttpCase, TransactionCase

import odoo
from odoo import SUPERUSER_ID, api


def set_params(env, **params):
    """``smskit.<key>`` system parameters (``None`` removes one)."""
    icp = env["ir.config_parameter"].sudo()
    for key, value in params.items():
        icp.set_param("smskit." + key, value if value is not None else False)


class SmskitCase(TransactionCase):
    """The addon commits (an outgoing row must survive whatever happens after the gateway was
    called). A real commit would end the test's transaction, so each test runs on Odoo's test
    cursor, where a commit is a savepoint inside it."""

    def setUp(self):
        super().setUp()
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)
        cr = self.registry.cursor()
        self.addCleanup(cr.close)
        self.env = self.env(cr=cr)


class SmskitHttpCase(HttpCase):
    """``HttpCase`` that also works when Odoo was started with ``--http-port=0`` (as
    ``odoo15 test`` does): the port the test server really listens on is used."""

    @classmethod
    def setUpClass(cls):
        if not odoo.tools.config["http_port"]:
            server = odoo.service.server.server
            port = server.httpd.server_port if server and getattr(server, "httpd", None) else 0
            if port:
                patcher = patch.dict(odoo.tools.config.options, {"http_port": port})
                patcher.start()
                cls.addClassCleanup(patcher.stop)
        super().setUpClass()


class SmskitLiveCase(TransactionCase):
    """The screens read smskit's store through SQL views, and smskit commits on connections of
    its own: a test's transaction (begun before, REPEATABLE READ) would never see those rows.
    So these tests act as a web request does: on a cursor of their own (``self.live``),
    committed as they go, in the throwaway database of ``odoo15 test``. Each test uses its own
    numbers and names; the parameters it sets are put back afterwards."""

    def setUp(self):
        super().setUp()
        self.live_cr = odoo.sql_db.db_connect(self.cr.dbname).cursor()
        self.addCleanup(self.live_cr.close)
        self.live = api.Environment(self.live_cr, SUPERUSER_ID, {})
        self.tag = uuid.uuid4().hex[:8]

    def params(self, **params):
        """Set ``smskit.<key>`` parameters for this test (committed; put back afterwards)."""
        icp = self.live["ir.config_parameter"].sudo()
        before = {key: icp.get_param("smskit." + key) for key in params}
        set_params(self.live, **params)
        self.live_cr.commit()

        def restore():
            set_params(self.live, **before)
            self.live_cr.commit()

        self.addCleanup(restore)

    def fresh(self):
        """What a new request sees (a new snapshot, nothing cached)."""
        self.live_cr.commit()
        self.live.clear()
        return self.live

    @contextlib.contextmanager
    def kit(self):
        with self.live["smskit.bridge"]._smskit_kit() as kit:
            yield kit
