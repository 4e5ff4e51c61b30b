# Fault injection for smskit's real Odoo tests: see __manifest__.py.
from . import models  # noqa: F401 - Odoo loads it for its models
