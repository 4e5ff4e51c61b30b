"""Shared by the addon's Odoo tests (run with ``odoo15 test``: see tests/odoo15 in smskit)."""

from unittest.mock import patch

from odoo.tests.common import HttpCase, TransactionCase

import odoo


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
