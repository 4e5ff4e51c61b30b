# A stand-in for the users' sms_base_sr, for smskit's tests: see __manifest__.py.
from . import models  # noqa: F401 - Odoo loads it for its models
