from . import (  # noqa: F401 - Odoo's test loader
    test_blacklist,
    test_bridge,
    test_odoo_sms,
    test_screens,
    test_webhook,
)
