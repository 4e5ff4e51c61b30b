from . import connector, conversation, message  # noqa: F401 - loaded for their models
