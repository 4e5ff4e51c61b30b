"""smskit_odoo: Odoo 15 persistence for smskit, over JSON-RPC or inside an Odoo addon.

* :class:`~smskit_odoo.store.OdooStore` (``SMSKIT_DATABASE_URL=odoo://user:pw@host:8069/db``):
  messages in ``sms.message`` / ``sms.sms``, partners, chatter notes, ``phone.blacklist``,
  with smskit's own state in a sidecar SQL store and a journal of pending Odoo writes;
* :class:`~smskit_odoo.adapter.RpcAdapter` / :class:`~smskit_odoo.adapter.EnvAdapter`: the one
  interface everything calls Odoo through;
* :func:`~smskit_odoo.schema.detect_schema`: which SMS schema the database has;
* :func:`attach`: register the per-kit hooks (template variables from Odoo records).
"""

from __future__ import annotations

from smskit_odoo.plugin import OdooPlugin, attach

__all__ = ["OdooPlugin", "attach"]
