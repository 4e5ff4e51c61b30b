"""HTTP clients for Twilio's Messages API: :class:`TwilioClient` (sync) and
:class:`AsyncTwilioClient`, both over the pure :mod:`smskit_twilio.wire` module.

Requests carry HTTP basic auth (the account SID and auth token, or an API key SID and secret),
send form-encoded bodies and read JSON answers.

Retries never risk a second send. They happen only when nothing can have reached Twilio (the
connection never opened: :class:`httpx.ConnectError`, :class:`httpx.ConnectTimeout`,
:class:`httpx.PoolTimeout`) or when Twilio said the request was not processed (429, error
20429, or 503 with ``Retry-After``; the delay is honoured up to ``max_retry_wait`` seconds, a
longer one is raised at once as :class:`~smskit.errors.RateLimitedError`). A read timeout, a
reset connection, a 5xx or an unreadable success after a create was sent raises
:class:`~smskit.errors.AmbiguousSendError`: reconcile, never resend blindly.

Credentials and the status callback URL (it carries the webhook secret) are
:class:`~smskit.config.Secret` values, masked in every repr, log line and exception.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Generic,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)
from urllib.parse import urlencode

import attrs
import httpx
from tenacity import AsyncRetrying, Retrying

from smskit.config import Secret, Settings, redact
from smskit.errors import (
    AmbiguousSendError,
    ConfigurationError,
    ProviderError,
    TransientProviderError,
)
from smskit.models import Message
from smskit.providers.retrying import NOTHING_SENT, RetryPolicy
from smskit_twilio import wire
from smskit_twilio.settings import TwilioSettings, check_base_url

__all__ = ["AsyncTwilioClient", "MessageList", "TwilioClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound="_ClientBase")
SecretLike = Union[str, Secret]
Pairs = Sequence[Tuple[str, str]]

# Failures that happen before a single byte of the request left: always safe to retry.


@attrs.frozen
class _Call(Generic[T]):
    """One API call: method and path (a path may carry its query), what to send, how to read
    the answer, and whether it may create a message."""

    method: str
    path: str
    parse: Callable[[Any], T]
    query: Pairs = ()
    form: Pairs = ()
    send: bool = False

    @property
    def what(self) -> str:
        """``"POST Messages.json"``: the method and the resource, for messages and logs."""
        return f"{self.method} {self.path.split('?', 1)[0].rsplit('/', 1)[-1]}"


@attrs.frozen
class MessageList:
    """Messages read from the list endpoint; ``complete`` is False when ``max_pages`` stopped
    the reading before the last page."""

    messages: Tuple[wire.TwilioMessage, ...]
    complete: bool


def _secret(value: Optional[SecretLike]) -> Optional[Secret]:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value) if value else None


class _ClientBase:
    """Configuration, request building and answer interpretation shared by both clients.

    Give ``account_sid`` and either ``auth_token`` or ``api_key_sid`` + ``api_key_secret``.
    ``from_`` / ``messaging_service_sid`` is the sender and ``status_callback`` the default
    callback URL of :meth:`send_message`.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: Optional[SecretLike] = None,
        *,
        api_key_sid: Optional[str] = None,
        api_key_secret: Optional[SecretLike] = None,
        from_: Optional[str] = None,
        messaging_service_sid: Optional[str] = None,
        status_callback: Optional[SecretLike] = None,
        base_url: str = wire.DEFAULT_BASE_URL,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 4,
        max_retry_wait: float = 60.0,
        allow_http: bool = False,
    ) -> None:
        if not account_sid:
            raise ConfigurationError("no Twilio account SID")
        token = _secret(auth_token)
        key_secret = _secret(api_key_secret)
        if api_key_sid and key_secret:
            user, password = api_key_sid, key_secret
        elif token:
            user, password = account_sid, token
        else:
            raise ConfigurationError("no Twilio credentials: pass auth_token or an API key")
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        self.account_sid = account_sid
        self.base_url = check_base_url(base_url, allow_http=allow_http)
        self.from_ = from_
        self.messaging_service_sid = messaging_service_sid
        self._status_callback = _secret(status_callback)
        self._password = password
        self._secret_texts = tuple(s.reveal() for s in (token, key_secret) if s)
        pair = f"{user}:{password.reveal()}".encode()
        self._authorization = Secret("Basic " + base64.b64encode(pair).decode("ascii"))
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._retry = RetryPolicy(max_attempts, max_retry_wait, log)

    @classmethod
    def from_settings(cls: Type[C], settings: Settings, **extra: Any) -> C:
        """A client configured from ``settings`` (see :mod:`smskit_twilio.settings`);
        ``extra`` goes to the constructor (``http=``, ``sleep=``)."""
        ts = TwilioSettings.from_settings(settings)
        return cls(
            ts.account_sid, ts.auth_token, api_key_sid=ts.api_key_sid,
            api_key_secret=ts.api_key_secret, from_=ts.from_,
            messaging_service_sid=ts.messaging_service_sid,
            status_callback=ts.status_callback, base_url=ts.base_url, timeout=ts.timeout,
            connect_timeout=ts.connect_timeout, max_attempts=ts.max_attempts,
            max_retry_wait=ts.max_retry_wait, allow_http=True, **extra,
        )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.base_url!r}, "
                f"account_sid={self.account_sid!r}, auth={self._password!r})")

    @property
    def status_callback(self) -> Optional[Secret]:
        """The default ``StatusCallback`` (a Secret: it may carry the webhook token)."""
        return self._status_callback

    # -- building calls ----------------------------------------------------------------------
    def _secrets(self) -> Tuple[Optional[str], ...]:
        hook = self._status_callback.reveal() if self._status_callback else None
        token_param = hook.rpartition("token=")[2] if hook and "token=" in hook else None
        return (*self._secret_texts, hook, token_param)

    def _redact(self, text: str) -> str:
        return redact(text, *self._secrets())

    def _send_call(self, message: Message,
                   status_callback: Optional[SecretLike]) -> _Call[wire.TwilioMessage]:
        hook = self._status_callback if status_callback is None else _secret(status_callback)
        form = wire.build_send_form(message, from_=self.from_,
                                    messaging_service_sid=self.messaging_service_sid,
                                    status_callback=hook.reveal() if hook else None)
        return _Call("POST", wire.messages_path(self.account_sid), wire.parse_message,
                     form=form, send=True)

    def _fetch_call(self, sid: str) -> _Call[wire.TwilioMessage]:
        return _Call("GET", wire.message_path(self.account_sid, sid), wire.parse_message)

    def _list_call(self, to: Optional[str], from_: Optional[str],
                   date_sent_after: Optional[dt.date],
                   page_size: int) -> _Call[wire.MessagePage]:
        query = wire.build_list_query(to=to, from_=from_, date_sent_after=date_sent_after,
                                      page_size=page_size)
        return _Call("GET", wire.messages_path(self.account_sid), wire.parse_message_page,
                     query=query)

    def _next_page_call(self, uri: str) -> _Call[wire.MessagePage]:
        return _Call("GET", uri, wire.parse_message_page)

    def _balance_call(self) -> _Call[wire.Balance]:
        return _Call("GET", wire.balance_path(self.account_sid), wire.parse_balance)

    # -- HTTP plumbing ---------------------------------------------------------------------
    def _request_args(self, call: _Call[Any]) -> Dict[str, Any]:
        headers = {"Authorization": self._authorization.reveal(), "Accept": "application/json"}
        args: Dict[str, Any] = {"method": call.method, "url": self.base_url + call.path,
                                "headers": headers, "timeout": self._timeout}
        if call.query:
            args["params"] = list(call.query)
        if call.method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            args["content"] = urlencode(list(call.form)).encode("ascii")
        return args

    def _interpret(self, call: _Call[T], response: httpx.Response) -> T:
        log.debug("Twilio %s -> HTTP %s", call.what, response.status_code)
        data: Any = None
        decoded = True
        if response.content.strip():
            try:
                data = json.loads(response.content)
            except ValueError:
                decoded = False
        if not 200 <= response.status_code < 300:
            raise wire.error_for_response(response.status_code, data, response.headers,
                                          what=call.what, send=call.send,
                                          secrets=self._secrets())
        try:
            if not decoded:
                raise ProviderError(f"Twilio {call.what} answered with a body that is not JSON")
            return call.parse(data)
        except ProviderError as exc:
            if call.send:
                raise AmbiguousSendError(
                    f"{self._redact(str(exc))}; the message may have been created: reconcile "
                    "before resending", status_code=response.status_code) from exc
            raise

    def _transport_error(self, call: _Call[Any], exc: httpx.HTTPError) -> ProviderError:
        what = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if isinstance(exc, NOTHING_SENT):
            return TransientProviderError(
                f"could not connect to Twilio for {call.what} ({what}); nothing was sent")
        if call.send:
            return AmbiguousSendError(
                f"Twilio {call.what} failed after the request was sent ({what}); the message "
                "may have been created: reconcile before resending")
        return TransientProviderError(f"Twilio {call.what} failed ({what})")


class TwilioClient(_ClientBase):
    """Synchronous Twilio client.

    ``http`` is an injected :class:`httpx.Client` (closed by you, not by :meth:`close`);
    ``sleep`` is what retries wait with (tests pass a recorder). Other options: see the base.
    """

    def __init__(self, account_sid: str, auth_token: Optional[SecretLike] = None, *,
                 http: Optional[httpx.Client] = None,
                 sleep: Callable[[float], None] = time.sleep, **options: Any) -> None:
        super().__init__(account_sid, auth_token, **options)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()
        self._sleep = sleep

    def _execute(self, call: _Call[T]) -> T:
        retrying = Retrying(sleep=self._sleep, **self._retry.options())
        result: T = retrying(self._attempt, call)
        return result

    def _attempt(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(**self._request_args(call))
        except httpx.TransportError as exc:
            raise self._transport_error(call, exc) from exc
        return self._interpret(call, response)

    def send_message(self, message: Message, *,
                     status_callback: Optional[SecretLike] = None) -> wire.TwilioMessage:
        """Create (send) one message; its Message resource (``status`` ``queued`` or
        ``accepted``). ``status_callback`` overrides the default callback URL."""
        return self._execute(self._send_call(message, status_callback))

    def fetch_message(self, sid: str) -> wire.TwilioMessage:
        """One message by its SID (``SM...``)."""
        return self._execute(self._fetch_call(sid))

    def list_messages(self, *, to: Optional[str] = None, from_: Optional[str] = None,
                      date_sent_after: Optional[dt.date] = None, page_size: int = 50,
                      max_pages: int = 10) -> MessageList:
        """Messages matching the filters, following ``next_page_uri`` for up to ``max_pages``
        pages (``complete`` says whether the last page was reached)."""
        page = self._execute(self._list_call(to, from_, date_sent_after, page_size))
        found = list(page.messages)
        for _ in range(max_pages - 1):
            if page.next_page_uri is None:
                break
            page = self._execute(self._next_page_call(page.next_page_uri))
            found.extend(page.messages)
        return MessageList(tuple(found), page.next_page_uri is None)

    def balance(self) -> wire.Balance:
        """The account balance and its currency."""
        return self._execute(self._balance_call())

    def close(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> TwilioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncTwilioClient(_ClientBase):
    """Asynchronous Twilio client: the same methods as :class:`TwilioClient`, awaited.

    ``http`` is an injected :class:`httpx.AsyncClient`; ``sleep`` an async sleep.
    """

    def __init__(self, account_sid: str, auth_token: Optional[SecretLike] = None, *,
                 http: Optional[httpx.AsyncClient] = None,
                 sleep: Optional[Callable[[float], Awaitable[None]]] = None,
                 **options: Any) -> None:
        super().__init__(account_sid, auth_token, **options)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._sleep = sleep

    async def _execute(self, call: _Call[T]) -> T:
        extra: Dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        retrying = AsyncRetrying(**extra, **self._retry.options())
        result: T = await retrying(self._attempt, call)
        return result

    async def _attempt(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(**self._request_args(call))
        except httpx.TransportError as exc:
            raise self._transport_error(call, exc) from exc
        return self._interpret(call, response)

    async def send_message(self, message: Message, *,
                           status_callback: Optional[SecretLike] = None) -> wire.TwilioMessage:
        """Create (send) one message (see :meth:`TwilioClient.send_message`)."""
        return await self._execute(self._send_call(message, status_callback))

    async def fetch_message(self, sid: str) -> wire.TwilioMessage:
        """One message by its SID."""
        return await self._execute(self._fetch_call(sid))

    async def list_messages(self, *, to: Optional[str] = None, from_: Optional[str] = None,
                            date_sent_after: Optional[dt.date] = None, page_size: int = 50,
                            max_pages: int = 10) -> MessageList:
        """Messages matching the filters (see :meth:`TwilioClient.list_messages`)."""
        page = await self._execute(self._list_call(to, from_, date_sent_after, page_size))
        found: List[wire.TwilioMessage] = list(page.messages)
        for _ in range(max_pages - 1):
            if page.next_page_uri is None:
                break
            page = await self._execute(self._next_page_call(page.next_page_uri))
            found.extend(page.messages)
        return MessageList(tuple(found), page.next_page_uri is None)

    async def balance(self) -> wire.Balance:
        """The account balance and its currency."""
        return await self._execute(self._balance_call())

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncTwilioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
