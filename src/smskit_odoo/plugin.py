"""The ``odoo`` plugin: the ``odoo://`` store scheme, and per-kit Odoo hooks.

Loaded through the ``smskit`` entry point. With no Odoo configured it registers only the
store scheme and the ``odoo`` campaign audience (:mod:`smskit_odoo.audience`), which do
nothing until a URL or a campaign names them.

The per-kit hooks (:class:`OdooPlugin`) need the kit's Odoo connection, which module-level
hook functions cannot reach, so they are registered on a kit by :func:`attach` (the
``kit_ready`` hook below does it automatically once the core calls it):

* ``prepare_message``: ``partner`` (found by the message's phone, or its ``partner_ref``) and,
  when the context names ``odoo_record="account.move,42"``, ``object``/``record``, as lazy
  template variables;
* when the store is *not* Odoo-backed but ``odoo_url`` is set: ``check_message`` refuses
  numbers on ``phone.blacklist``, and ``message_sent``/``message_status_changed`` post the
  chatter notes. (An :class:`~smskit_odoo.store.OdooStore` does both itself, batched.)
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

from smskit.hookspecs import hookimpl
from smskit.models import Message, State, utcnow
from smskit.plugins import store_scheme
from smskit_odoo.variables import FieldCache, OdooRecordVars, parse_record_ref

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.store.base import Store
    from smskit_odoo.session import OdooSession

__all__ = ["PLUGIN_NAME", "OdooPlugin", "attach", "kit_ready", "register_audience_sources",
           "register_stores", "session_for"]

log = logging.getLogger(__name__)

#: The name :func:`attach` registers the per-kit plugin under.
PLUGIN_NAME = "smskit_odoo.kit"


def _odoo_store(url: str, settings: Settings) -> Store:
    from smskit_odoo.store import open_store

    return open_store(url, settings)


@hookimpl
def register_stores(register: Callable[[str, Any], None]) -> None:
    """Register the ``odoo`` URL scheme (``odoo://user:password@host:8069/db``)."""
    register("odoo", _odoo_store)


class OdooPlugin:
    """The Odoo hooks of one kit (see the module docs)."""

    def __init__(self, session: OdooSession, *, store_backed: bool) -> None:
        self.session = session
        self.store_backed = store_backed
        self.fields = FieldCache(session.adapter)
        self._partner_ids: Dict[str, Optional[int]] = {}

    def __repr__(self) -> str:
        return f"OdooPlugin({self.session!r}, store_backed={self.store_backed})"

    def forget(self) -> None:
        """Forget the partners remembered by phone (a kit kept across Odoo requests: another
        request may have created or changed them)."""
        self._partner_ids.clear()

    def partner_id(self, phone: str) -> Optional[int]:
        """The partner of ``phone`` (remembered for this plugin's life)."""
        if phone not in self._partner_ids:
            if len(self._partner_ids) > 10000:
                self._partner_ids.clear()
            self._partner_ids[phone] = self.session.partners.find([phone]).get(phone)
        return self._partner_ids[phone]

    @hookimpl
    def prepare_message(self, message: Message,
                        context: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """Lazy ``partner`` and ``object``/``record`` variables (read only when used)."""
        extra: Dict[str, Any] = {}
        if "partner" not in context:
            ref = parse_record_ref(message.partner_ref)
            if ref is not None and ref[0] == "res.partner":
                extra["partner"] = OdooRecordVars(self.fields, "res.partner", ref[1])
            elif message.phone:
                phone = message.phone
                extra["partner"] = OdooRecordVars(self.fields, "res.partner",
                                                  lambda: self.partner_id(phone))
        record = parse_record_ref(context.get("odoo_record"))
        if record is not None:
            variables = OdooRecordVars(self.fields, record[0], record[1])
            extra.setdefault("object", variables)
            extra.setdefault("record", variables)
        return extra or None

    @hookimpl
    def check_message(self, message: Message) -> Optional[str]:
        """Refuse numbers on ``phone.blacklist`` (the Odoo store already does it)."""
        if self.store_backed:
            return None
        if message.phone in self.session.odoo_blacklist():
            return "number is on Odoo's phone.blacklist"
        return None

    @hookimpl
    def message_sent(self, message: Message) -> None:
        """A chatter note on the partner (the Odoo store already does it)."""
        if not self.store_backed:
            self._note(message, "sent")

    @hookimpl
    def message_status_changed(self, message: Message, old: State, new: State) -> None:
        """A chatter note on a final status (the Odoo store already does it)."""
        if not self.store_backed and new.is_final:
            self._note(message, "final")

    @hookimpl
    def balance_low(self, provider: str, balance: Any, threshold: Any) -> None:
        """A chatter note on the connected Odoo user's partner, so an operator sees it in
        Odoo. Queued in the durable journal first: a down Odoo gets it once it is back."""
        partner = self.session.user_partner_id()
        text = (f"Saldo baixo no provedor de SMS {provider}: {balance} "
                f"(limite configurado: {threshold}).")
        key = f"balance:{provider}:{utcnow():%Y%m%dT%H%M%S}"
        if self.session.note(key, "balance_low", partner, text):
            self.session.flush(kinds=["note"], force=True)

    def _note(self, message: Message, event: str) -> None:
        from smskit_odoo.store import _note_text

        ref = parse_record_ref(message.partner_ref)
        partner = ref[1] if ref and ref[0] == "res.partner" else self.partner_id(message.phone)
        if self.session.note(message.id, event, partner, _note_text(message, event)):
            self.session.flush(kinds=["note"], force=True, raise_errors=True)


def session_for(kit: SmsKit) -> Tuple[Optional[OdooSession], bool]:
    """The Odoo session a kit should use and whether its store is Odoo-backed: the Odoo
    store's session, else a new one for ``odoo_url``; ``(None, False)`` when no Odoo is
    configured (nothing is built, called or imported then: the store module brings
    SQLAlchemy)."""
    settings = kit.settings
    if (_is_odoo_store(kit.store) if kit.has_store
            else store_scheme(settings.database_url) == "odoo"):
        from smskit_odoo.store import OdooStore

        store = kit.store  # built here when the settings name an Odoo store
        if isinstance(store, OdooStore):
            return store.session, True
    url = settings.get("odoo_url")
    if not url:
        return None, False
    from smskit_odoo.store import open_session

    return open_session(url, settings), False


def _is_odoo_store(store: object) -> bool:
    """Whether ``store`` is an :class:`~smskit_odoo.store.OdooStore`, without importing that
    module: an instance can only exist once it was imported."""
    module = sys.modules.get("smskit_odoo.store")
    return module is not None and isinstance(store, module.OdooStore)


def attach(kit: SmsKit) -> Optional[OdooPlugin]:
    """Register :class:`OdooPlugin` on ``kit`` (once); ``None`` when no Odoo is configured."""
    existing = kit.plugins.get(PLUGIN_NAME)
    if isinstance(existing, OdooPlugin):
        return existing
    session, store_backed = session_for(kit)
    if session is None:
        return None
    plugin = OdooPlugin(session, store_backed=store_backed)
    kit.plugins.register(plugin, name=PLUGIN_NAME)
    return plugin


@hookimpl
def register_audience_sources(register: Callable[[str, Any], None]) -> None:
    """Register the ``odoo`` campaign audience (the records of an Odoo domain)."""
    from smskit_odoo.audience import OdooDomainSource

    register("odoo", OdooDomainSource())


@hookimpl
def kit_ready(kit: SmsKit) -> None:
    """Attach the per-kit hooks when the core announces a new kit (``kit_ready``)."""
    attach(kit)
