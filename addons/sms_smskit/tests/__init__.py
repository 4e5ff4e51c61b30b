from . import test_blacklist, test_bridge, test_webhook  # noqa: F401 - Odoo's test loader
