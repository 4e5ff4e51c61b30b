# ruff: noqa: I001 - the order below is the order Odoo needs
from . import acrux_connector, ir_http, phone_blacklist, smskit_bridge  # noqa: F401 - models

# The SMS app's screens, in this order (not sorted): Odoo builds models in the order their
# classes are defined, a model after the mixins it inherits, and the screens' SQL views join
# the tables of the scheduled sends and campaigns, which must exist first.
from . import smskit_store  # noqa: F401
from . import smskit_audience  # noqa: F401
from . import smskit_schedule  # noqa: F401
from . import smskit_campaign  # noqa: F401
from . import smskit_message  # noqa: F401
from . import smskit_stats  # noqa: F401
from . import smskit_blacklist  # noqa: F401
from . import smskit_journal  # noqa: F401
from . import res_config_settings  # noqa: F401
