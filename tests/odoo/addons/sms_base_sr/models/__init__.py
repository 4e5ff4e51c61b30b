from . import sms_message, sms_provider  # noqa: F401 - loaded for their models
