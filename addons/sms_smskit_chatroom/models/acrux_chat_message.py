"""The delivery state of an agent's SMS reply, on its ChatRoom message.

``smskit_state`` follows smskit's message (queued, sent, delivered, not delivered...), kept in
step by ``smskit_odoo.origins`` when Kolmeya's callback arrives; a failure also fills
ChatRoom's own ``error_msg`` (what its conversation view shows under a message: the real
ChatRoom has that field, the tests' stand-in too), with the gateway's reason.
"""

from odoo import fields, models

SMSKIT_STATES = [
    ("outgoing", "Queued"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("error", "Not delivered"),
    ("expired", "Expired"),
    ("rejected", "Rejected"),
    ("canceled", "Canceled"),
]


class AcruxChatMessage(models.Model):
    _inherit = "acrux.chat.message"

    smskit_state = fields.Selection(SMSKIT_STATES, "SMS state", readonly=True, copy=False,
                                    index=True)
