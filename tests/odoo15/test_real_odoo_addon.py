"""The addon inside Odoo 15 itself: its own Odoo tests (``TransactionCase`` and ``HttpCase``,
run by ``odoo15 test``), its cron on a database nobody configured yet, smskit installed
into Odoo's virtualenv the way addons/sms_smskit/README.md says, and the addons' Portuguese
against Odoo's own export of their texts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from odoo15_harness import ADDON_PATHS, Odoo15

from po_helpers import po_entries

pytestmark = pytest.mark.real_odoo


def test_the_addons_own_odoo_tests_pass(odoo15: Odoo15) -> None:
    db = f"odoo_t_addontests_{os.getpid()}_1"
    odoo15.drop_database(db)
    try:
        # sms_base_sr (the stand-in) gives the tests the users' sms.message; it has no tests.
        # The ChatRoom stand-in and mass_mailing_sms come as dependencies (their tests do
        # not run: only the named modules' do)
        result = odoo15.test(db, ["sms_base_sr", "sms_smskit", "sms_smskit_chatroom",
                                  "sms_smskit_mass_mailing"])
    finally:
        odoo15.drop_database(db)
        odoo15.sidecar(db).unlink(missing_ok=True)
    log = (odoo15.directory / f"test-{db}.log").read_text(errors="replace")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    ran = re.search(r"0 failed, 0 error\(s\) of (\d+) tests", log)
    assert ran and int(ran.group(1)) >= 45, "the addon's Odoo tests did not run"
    for case in ("TestBridge", "TestBlacklist", "TestWebhook", "TestOdooSms", "TestChatRoom",
                 "TestMailing", "TestScreens"):
        assert f"Starting {case}." in log, f"{case} did not run"


@pytest.fixture
def fresh_db(odoo15: Odoo15) -> Iterator[str]:
    """A copy of the users' template nobody configured smskit on (no server)."""
    db = odoo15.new_database("sr")
    yield db
    odoo15.drop_database(db)


CRON = """
import logging
for name in ("odoo.addons.sms_smskit", "smskit", "smskit_odoo", "smskit_acrux"):
    logging.getLogger(name).setLevel(logging.INFO)
cron = env.ref("sms_smskit.ir_cron_smskit_run")
for minute in range(2):
    # what Odoo's cron runner does every minute (it logs an exception with a traceback)
    env["ir.cron"]._callback(cron.cron_name, cron.ir_actions_server_id.id, cron.id)
print("cron ran")
"""


def test_the_cron_is_quiet_until_configured(odoo15: Odoo15, fresh_db: str) -> None:
    result = odoo15.shell(fresh_db, CRON)
    out = result.stdout + result.stderr
    assert "cron ran" in out, out[-2000:]
    assert "Traceback" not in out and " ERROR " not in out, out[-3000:]
    assert "SMSKIT_" not in out, "the addon reads system parameters, not the environment"
    info = [line for line in out.splitlines() if " INFO " in line and "smskit." in line]
    assert len(info) <= 2 and all("smskit.kolmeya_token" in line for line in info), info


def test_smskit_installs_next_to_odoos_pins(odoo15: Odoo15) -> None:
    pip = odoo15.directory / "venv" / "bin" / "pip"
    result = subprocess.run([str(pip), "check"], capture_output=True, text=True, check=False,
                            env=odoo15.environ)
    assert result.returncode == 0, result.stdout + result.stderr
    python = odoo15.directory / "venv" / "bin" / "python"
    imported = subprocess.run(
        [str(python), "-c", "import smskit, smskit_odoo, smskit_acrux; print(smskit.__file__)"],
        capture_output=True, text=True, check=False, env=odoo15.environ)
    assert imported.returncode == 0, imported.stderr
    assert "site-packages" in imported.stdout, "Odoo must use the smskit pip installed"


def test_odoos_gevent_still_imports(odoo15: Odoo15) -> None:
    # smskit's SQLAlchemy 2 needs greenlet >= 1, which Odoo 15's pinned gevent 20.9 cannot
    # import with; the odoo-addon extra brings the gevent 21.8 + greenlet 1.1 pair (the
    # longpolling process of --workers mode is tested in test_real_odoo_concurrency.py)
    python = odoo15.directory / "venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import gevent, gevent.monkey, greenlet, sqlalchemy; "
                            "print(gevent.__version__, greenlet.__version__)"],
        capture_output=True, text=True, check=False, env=odoo15.environ)
    assert result.returncode == 0, result.stderr[-1500:]
    gevent_version, greenlet_version = result.stdout.split()
    assert gevent_version == "21.8.0" and greenlet_version.startswith("1.1"), result.stdout


ALONE = """
set = env["ir.config_parameter"].sudo().set_param
set("smskit.provider", "loopback")
set("smskit.webhook_secret", "alone-secret")
modules = env["ir.module.module"].search([("state", "=", "installed"), ("name", "in", [
    "sms_smskit", "sms_smskit_chatroom", "sms_smskit_mass_mailing", "whatsapp_connector"])])
print("INSTALLED", sorted(modules.mapped("name")))
partner = env["res.partner"].create({"name": "Ana", "mobile": "+5511987654321"})
composer = env["sms.composer"].with_context(active_model="res.partner",
                                            active_id=partner.id).create({"body": "Oi"})
message = composer._action_send_sms()
print("HELD", message.notification_ids.notification_status)  # until the commit
env.cr.commit()  # the SMS goes to the gateway once this transaction has committed
print("NOTIFICATION", message.notification_ids.notification_status)
"""


def test_the_addon_installs_without_the_chatroom(odoo15: Odoo15) -> None:
    # sms_smskit no longer depends on whatsapp_connector: its ChatRoom part,
    # sms_smskit_chatroom, comes by itself where the ChatRoom is installed
    db = f"odoo_t_alone_{os.getpid()}_1"
    odoo15.drop_database(db)
    try:
        result = odoo15.run("init", str(odoo15.directory), db, "sms_smskit",
                            *odoo15.addons_args())
        assert result.returncode == 0, result.stdout[-3000:]
        shell = odoo15.shell(db, ALONE)
    finally:
        odoo15.drop_database(db)
        odoo15.sidecar(db).unlink(missing_ok=True)
    out = shell.stdout + shell.stderr
    assert "INSTALLED ['sms_smskit']" in out, out[-3000:]
    assert "HELD ready" in out and "NOTIFICATION pending" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


#: The addons whose texts people see, all installed in the "mass" variant.
TRANSLATED = ("sms_smskit", "sms_smskit_chatroom", "sms_smskit_mass_mailing")
EXPORT = """
import io
from odoo.tools.translate import trans_export
for module in {modules!r}:
    out = io.BytesIO()
    trans_export(False, [module], out, "po", env.cr)
    with open({directory!r} + "/" + module + ".pot", "wb") as pot:
        pot.write(out.getvalue())
print("exported")
"""


def test_every_text_the_addons_show_has_its_portuguese(odoo15: Odoo15, tmp_path: Path) -> None:
    """Odoo's own export of each addon's terms (views, menus, fields, selections, models and
    ``_()`` texts: what Settings > Translations > Export gives) is the committed ``.pot``,
    and ``pt_BR.po`` translates each one: no screen of the SMS app, the ChatRoom part or the
    mailing part shows English to a Portuguese user (the unit test sees ``_()`` only)."""
    db = odoo15.new_database("mass")
    try:
        result = odoo15.shell(db, EXPORT.format(modules=TRANSLATED, directory=str(tmp_path)))
    finally:
        odoo15.drop_database(db)
    assert "exported" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    addons = ADDON_PATHS[0]
    for module in TRANSLATED:
        exported = po_entries(tmp_path / f"{module}.pot")
        assert len(exported) >= 5, module
        committed = po_entries(addons / module / "i18n" / f"{module}.pot")
        translated = po_entries(addons / module / "i18n" / "pt_BR.po")
        assert sorted(set(exported) - set(committed)) == [], \
            f"{module}: texts Odoo exports that i18n/{module}.pot lacks (regenerate it)"
        assert sorted(set(committed) - set(exported)) == [], \
            f"{module}: i18n/{module}.pot holds texts the addon no longer has"
        assert [text for text in exported if not translated.get(text)] == [], \
            f"{module}: texts without a Portuguese translation in i18n/pt_BR.po"
