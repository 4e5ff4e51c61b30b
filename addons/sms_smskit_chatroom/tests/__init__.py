from . import test_chatroom  # noqa: F401 - Odoo's test loader
