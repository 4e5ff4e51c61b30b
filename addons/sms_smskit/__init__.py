# smskit bridge for Odoo 15: see README.md.
from . import controllers, models, webhook_http  # noqa: F401 - Odoo loads them for their classes

# With the addon in server_wide_modules, webhook requests are plain HTTP from the start
# (webhook_http.py says what that adds).
webhook_http.install()
