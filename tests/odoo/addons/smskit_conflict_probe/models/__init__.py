from . import probes  # noqa: F401 - loaded for its models
