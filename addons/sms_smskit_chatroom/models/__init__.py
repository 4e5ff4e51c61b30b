from . import acrux_chat_message, acrux_connector, smskit_bridge  # noqa: F401 - models
