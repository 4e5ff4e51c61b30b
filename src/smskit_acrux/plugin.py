"""The ``acrux`` plugin: SMS replies into acrux ChatRoom conversations.

Loaded through the ``smskit`` entry point; with no Odoo configured it registers nothing that
acts. :func:`attach` registers :class:`ChatRoomPlugin` on a kit (the ``kit_ready`` hook does it
once the core calls that hook): ``route_inbound`` puts each new reply into the conversation
of the SMS connector and says where it went; ``message_received`` routes a reply that another
plugin's ``route_inbound`` took first (de-duplicated by msgid either way). The core has
already applied opt-out keywords (blacklist) before routing: a "SAIR" still reaches the
agents, and the number is already blacklisted.

Settings: ``acrux_connector_id`` or ``acrux_connector_name`` (default: the only connector of
type ``sms``), ``acrux_create_partners`` (default ``true``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Set

from smskit.hookspecs import hookimpl
from smskit.models import Direction, Message

if TYPE_CHECKING:
    from smskit.kit import SmsKit
    from smskit_acrux.router import ChatRoomRouter

__all__ = ["PLUGIN_NAME", "ChatRoomPlugin", "attach", "kit_ready"]

#: The name :func:`attach` registers the per-kit plugin under.
PLUGIN_NAME = "smskit_acrux.kit"


class ChatRoomPlugin:
    """The ChatRoom hooks of one kit."""

    def __init__(self, router: ChatRoomRouter) -> None:
        self.router = router
        self._seen: Set[str] = set()

    def __repr__(self) -> str:
        return f"ChatRoomPlugin({self.router!r})"

    @hookimpl
    def route_inbound(self, message: Message) -> Optional[str]:
        """Put the reply in its ChatRoom conversation; where it went."""
        if message.direction is not Direction.INBOUND:
            return None
        self._seen.add(message.id)
        return self.router.route(message)

    @hookimpl
    def message_received(self, message: Message) -> None:
        """Route a reply another plugin's ``route_inbound`` answered first."""
        if message.direction is Direction.INBOUND and message.id not in self._seen:
            self._seen.add(message.id)
            self.router.route(message)
        if len(self._seen) > 10000:
            self._seen.clear()


def attach(kit: SmsKit, *, connector_id: Optional[int] = None) -> Optional[ChatRoomPlugin]:
    """Register :class:`ChatRoomPlugin` on ``kit`` (once); ``None`` without Odoo."""
    existing = kit.plugins.get(PLUGIN_NAME)
    if isinstance(existing, ChatRoomPlugin):
        return existing
    from smskit_odoo.plugin import attach as attach_odoo

    odoo = attach_odoo(kit)
    if odoo is None:
        return None
    # Imported only with an Odoo configured: they bring SQLAlchemy (the Odoo journal).
    from smskit_acrux.router import ChatRoomRouter
    from smskit_odoo.store import OdooStore

    settings = kit.settings
    configured = settings.get("acrux_connector_id")
    reply_ref = None
    if odoo.store_backed and isinstance(kit.store, OdooStore):
        reply_ref = kit.store.reply_reference
    router = ChatRoomRouter(
        odoo.session,
        connector_id=connector_id or (int(configured) if configured else None),
        connector_name=settings.get("acrux_connector_name"),
        reply_ref=reply_ref,
        create_partners=settings.flag("acrux_create_partners", True))
    plugin = ChatRoomPlugin(router)
    kit.plugins.register(plugin, name=PLUGIN_NAME)
    return plugin


@hookimpl
def kit_ready(kit: SmsKit) -> None:
    """Attach the ChatRoom hooks when the core announces a new kit (``kit_ready``)."""
    attach(kit)
