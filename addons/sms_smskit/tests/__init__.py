from . import test_blacklist, test_bridge, test_odoo_sms, test_webhook  # noqa: F401
