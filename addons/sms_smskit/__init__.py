# smskit bridge for Odoo 15: see README.md.
from . import controllers, models  # noqa: F401 - Odoo loads them for their classes
