from . import (  # noqa: F401 - models
    ir_http,
    mail_notification,
    phone_blacklist,
    sms_api,
    sms_resend,
    sms_sms,
    smskit_bridge,
    smskit_odoo_sms,
)
