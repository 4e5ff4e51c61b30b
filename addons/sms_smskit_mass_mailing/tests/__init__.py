from . import test_mailing  # noqa: F401 - Odoo's test loader
