from . import mailing_trace  # noqa: F401 - models
