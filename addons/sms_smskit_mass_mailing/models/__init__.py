from . import mailing_trace, sms_sms  # noqa: F401 - models
