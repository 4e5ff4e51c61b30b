"""smskit_acrux: inbound SMS into acrux ChatRoom conversations (``acrux.chat.conversation``).

:class:`~smskit_acrux.router.ChatRoomRouter` does the work over the same Odoo session as
:mod:`smskit_odoo`; :func:`attach` registers its hooks on a kit.
"""

from __future__ import annotations

from smskit_acrux.plugin import ChatRoomPlugin, attach

__all__ = ["ChatRoomPlugin", "attach"]
