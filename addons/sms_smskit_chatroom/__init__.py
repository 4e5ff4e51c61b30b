# The ChatRoom part of sms_smskit: see ../sms_smskit/README.md.
from . import models  # noqa: F401 - Odoo loads it for its classes
