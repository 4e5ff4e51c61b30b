# ruff: noqa: I001 - the order below is the order Odoo needs
# (the ChatRoom's acrux.chat.connector is sms_smskit_chatroom's: sms_smskit installs without it)
from . import (  # noqa: F401 - models
    ir_http,
    mail_notification,
    phone_blacklist,
    sms_api,
    sms_resend,
    sms_sms,
    smskit_bridge,
    smskit_odoo_sms,
)

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
