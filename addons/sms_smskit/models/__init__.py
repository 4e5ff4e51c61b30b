from . import acrux_connector, ir_http, phone_blacklist, smskit_bridge  # noqa: F401 - models
