from . import webhook  # noqa: F401 - loaded for its routes
