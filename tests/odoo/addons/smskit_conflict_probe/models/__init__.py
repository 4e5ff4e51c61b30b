from . import sms_sms  # noqa: F401 - loaded for its model
