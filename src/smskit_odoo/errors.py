"""What can go wrong talking to Odoo, as :mod:`smskit.errors` classes::

    StoreError
    └── OdooError                  any failure of a call to Odoo
        ├── OdooUnavailableError   Odoo did not answer (refused, timeout, proxy 502/503)
        ├── OdooTransientError     a concurrent transaction got in the way: retry afresh
        └── OdooRpcError           Odoo answered with an error object (``name`` says which)
            ├── OdooAccessError    AccessError / AccessDenied / a refused login
            ├── OdooValidationError  ValidationError, UserError, a violated constraint
            └── OdooMissingModelError  the model is not installed
    ConfigurationError
    └── OdooSchemaError            the installed schema does not fit (names what is missing)

Every message names the model and method called and never contains the password.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from smskit.errors import ConfigurationError, StoreError

__all__ = [
    "OdooAccessError",
    "OdooError",
    "OdooMissingModelError",
    "OdooRpcError",
    "OdooSchemaError",
    "OdooTransientError",
    "OdooUnavailableError",
    "OdooValidationError",
]


class OdooError(StoreError):
    """A call to Odoo failed."""


class OdooUnavailableError(OdooError):
    """Odoo could not be reached or did not answer; nothing was written by this call."""


class OdooTransientError(OdooError):
    """A concurrent transaction got in the way and nothing of this call was written: a
    serialization failure ("could not serialize access due to concurrent update"), a deadlock,
    a lock not obtained, or a unique violation from a record another transaction created
    meanwhile. The same call in a fresh transaction may succeed; it is never a reason to give
    a pending write up."""


class OdooRpcError(OdooError):
    """Odoo answered with an error object.

    ``name`` is Odoo's exception name (``odoo.exceptions.ValidationError``), ``odoo_message``
    its message, ``model``/``method`` what was called.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        odoo_message: str = "",
        model: Optional[str] = None,
        method: Optional[str] = None,
        arguments: Sequence[Any] = (),
    ) -> None:
        self.name = name
        self.odoo_message = odoo_message
        self.model = model
        self.method = method
        self.arguments = tuple(arguments)
        super().__init__(message)


class OdooAccessError(OdooRpcError):
    """The Odoo user may not do this (or the login was refused)."""


class OdooValidationError(OdooRpcError):
    """Odoo refused the values (a constraint, a required field, a UserError)."""


class OdooMissingModelError(OdooRpcError):
    """The model does not exist in this database (its module is not installed)."""


class OdooSchemaError(ConfigurationError):
    """The installed modules do not give smskit what it needs; the message says what is missing."""
