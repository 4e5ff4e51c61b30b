"""The one exception tree of smskit.

Every error smskit raises on purpose is a :class:`SmsKitError`; catch that to catch them all.
Messages name the offending input (the phone, the variable, the recipient) and never contain
secrets::

    SmsKitError
    ├── ConfigurationError          bad or missing settings (unknown store URL, missing token)
    ├── PluginError                 a plugin could not load, or broke the plugin contract
    │   └── DuplicateProviderError  two plugins registered the same provider name
    ├── ValidationError             input the caller can fix; nothing was stored or sent
    │   ├── InvalidPhoneError       a number that is not a (mobile) phone number
    │   ├── EmptyBodyError          a message with no text
    │   ├── BodyTooLongError        a body over the configured segment cap
    │   └── TemplateError           a template that cannot be parsed
    │       └── MissingVariableError  a placeholder with no value and no default
    ├── StoreError                  the store failed or refused an operation
    │   └── NotFoundError           no such message / schedule / record
    └── ProviderError               the SMS gateway failed; says whether anything may have been sent
        ├── TransientProviderError  nothing was sent; safe to try again later
        │   └── RateLimitedError    the gateway asked us to slow down (``retry_after`` seconds)
        ├── AmbiguousSendError      the request may have arrived: reconcile, never resend blindly
        │   └── PartialSendError    a batch stopped part-way: sent, unknown and unsent messages
        ├── AuthenticationError     bad or missing credentials (HTTP 401/403)
        ├── RequestRejectedError    the gateway refused the request as invalid (HTTP 422 and kin)
        ├── ProviderNotFoundError   the gateway does not know the resource (HTTP 404)
        └── NotSupportedError       the provider does not offer the operation (its capabilities)

``ProviderError.sent_nothing`` tells the pipeline whether the messages may be dispatched again
(``True``) or must be reconciled first (``False``).

:class:`NotSupportedError` is a :class:`ProviderError` (with ``sent_nothing=True``) so that code
already handling a gateway that cannot answer handles one that never can: a batch whose
provider cannot reconcile stays ``ambiguous`` (for a person to settle) instead of crashing the
worker, and a campaign pause reports the operation as failed for that gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from smskit.models import SendResult


class SmsKitError(Exception):
    """Base class of every error smskit raises on purpose."""


class ConfigurationError(SmsKitError):
    """A setting is missing or invalid."""


class PluginError(SmsKitError):
    """A plugin failed to load or broke the plugin contract."""


class DuplicateProviderError(PluginError):
    """Two plugins registered a provider (or store scheme) under the same name."""


class ValidationError(SmsKitError):
    """Input the caller can fix. Nothing was stored or sent because of it."""


class InvalidPhoneError(ValidationError):
    """A phone number that cannot be parsed, is invalid, or is not an allowed type."""

    def __init__(self, raw: object, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"invalid phone number {raw!r}: {reason}")


class EmptyBodyError(ValidationError):
    """The message text is empty (or only white space)."""


class BodyTooLongError(ValidationError):
    """The body needs more segments than the configured cap allows."""

    def __init__(self, segments: int, cap: int) -> None:
        self.segments = segments
        self.cap = cap
        super().__init__(f"message needs {segments} segments, over the cap of {cap}")


class TemplateError(ValidationError):
    """A template that cannot be parsed."""


class MissingVariableError(TemplateError):
    """A placeholder has no value in the context and no ``default(...)``."""

    def __init__(self, variable: str, recipient: Optional[str] = None) -> None:
        self.variable = variable
        self.recipient = recipient
        where = f" for recipient {recipient}" if recipient else ""
        super().__init__(f"template variable {variable!r} is missing{where}")


class StoreError(SmsKitError):
    """The store failed or refused an operation."""


class NotFoundError(StoreError):
    """No record with that id."""


class ProviderError(SmsKitError):
    """The SMS gateway failed.

    ``sent_nothing`` is ``True`` only when it is certain that no message reached the gateway
    (a connection that never opened, a 429, a 401). Otherwise the batch must be reconciled.
    """

    sent_nothing: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        errors: Sequence[str] = (),
    ) -> None:
        self.status_code = status_code
        self.errors = tuple(errors)
        super().__init__(message)


class TransientProviderError(ProviderError):
    """Nothing was sent (connect error, gateway overloaded); safe to try again later."""

    sent_nothing = True


class RateLimitedError(TransientProviderError):
    """HTTP 429 (or 503 with Retry-After): the gateway asked us to wait ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        status_code: Optional[int] = 429,
        errors: Sequence[str] = (),
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code, errors=errors)


class AmbiguousSendError(ProviderError):
    """The request may have reached the gateway (timeout, reset, 5xx): reconcile, do not resend."""

    sent_nothing = False


class PartialSendError(AmbiguousSendError):
    """A batch stopped part-way (a gateway that takes one message per request failed at one of
    them): never resend it blindly, but do not hold back more than is unknown either.

    ``results`` are the results of the messages handled before the stop; ``ambiguous`` the ids
    whose request may have arrived (reconcile those); ``unsent`` the ids certainly never sent
    (safe to send again). The send pipeline records the results, puts the unsent messages back
    in the queue and leaves only the ambiguous ones (and any message named nowhere) for
    reconciliation. The error that stopped the batch is its ``__cause__``.
    """

    def __init__(self, message: str, *, results: Sequence[SendResult] = (),
                 ambiguous: Sequence[str] = (), unsent: Sequence[str] = (),
                 status_code: Optional[int] = None) -> None:
        self.results = tuple(results)
        self.ambiguous = tuple(ambiguous)
        self.unsent = tuple(unsent)
        super().__init__(message, status_code=status_code)


class AuthenticationError(ProviderError):
    """Credentials missing, wrong, or not allowed from this address (HTTP 401/403)."""

    sent_nothing = True


class RequestRejectedError(ProviderError):
    """The gateway refused the request as invalid (HTTP 400/422): nothing was sent."""

    sent_nothing = True


class ProviderNotFoundError(ProviderError):
    """The gateway does not know the resource (HTTP 404)."""

    sent_nothing = True


class NotSupportedError(ProviderError):
    """The provider does not offer ``operation`` (its :class:`~smskit.provider.Capabilities`
    say so): the default of every optional :class:`~smskit.provider.Provider` method.

    Nothing was sent. Callers that can do without the operation check the capability first.
    """

    sent_nothing = True

    def __init__(self, provider: str, operation: str) -> None:
        self.provider = provider
        self.operation = operation
        super().__init__(f"provider {provider!r} does not support {operation}")
