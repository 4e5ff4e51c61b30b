"""15.0.2.0.0 keeps smskit's store in this database (schema ``smskit``) by default. A database
that ran an earlier version has its store in a SQLite file under Odoo's data directory (the old
default): that file stays in use, so nothing pending (queued SMS, schedules, the journal of
Odoo writes) is lost; the SMS screens show the store only once it is in this database (see the
addon's README, "Upgrading from 15.0.1")."""

import logging
import os

from odoo.tools import config

_logger = logging.getLogger(__name__)
KEY = "smskit.odoo_sidecar_url"


def migrate(cr, version):
    if not version:
        return
    cr.execute("SELECT value FROM ir_config_parameter WHERE key = %s", (KEY,))
    if cr.fetchone():
        return  # a store was named by hand: it stays
    path = os.path.join(config["data_dir"], "smskit", f"{cr.dbname}.db")
    if not os.path.isfile(path):
        return
    cr.execute("INSERT INTO ir_config_parameter (key, value, create_uid, write_uid, "
               "create_date, write_date) VALUES (%s, %s, 1, 1, now() at time zone 'UTC', "
               "now() at time zone 'UTC')", (KEY, "sqlite:///" + path))
    _logger.warning("smskit: this database keeps its store in %s (%s): the SMS screens show "
                    "the store only once it is in the database; see the addon's README",
                    path, KEY)
