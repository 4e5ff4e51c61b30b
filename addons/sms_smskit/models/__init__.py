from . import acrux_connector, smskit_bridge  # noqa: F401 - loaded for their models
