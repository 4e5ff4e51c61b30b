"""HTTP clients for Kolmeya's SMS API: :class:`KolmeyaClient` (sync) and
:class:`AsyncKolmeyaClient`, both over the pure :mod:`smskit_kolmeya.wire` module.

Every call is a ``POST`` with a JSON body and ``Authorization: Bearer <token>``.

Retries never risk a second send. They happen only when nothing can have reached Kolmeya (the
connection never opened: :class:`httpx.ConnectError`, :class:`httpx.ConnectTimeout`,
:class:`httpx.PoolTimeout`) or when Kolmeya asked for it (429, or 503 with ``Retry-After``,
whose delay is honoured up to ``max_retry_wait`` seconds; a longer one is raised at once as
:class:`~smskit.errors.RateLimitedError` for the caller to reschedule). A read timeout, a reset
connection or a 5xx after an ``sms/store`` request was sent raises
:class:`~smskit.errors.AmbiguousSendError`: reconcile, never resend blindly.

The token is a :class:`~smskit.config.Secret`: it is revealed only into the request header and
is masked in every repr, log line and exception, as is the callback URL (it carries the webhook
secret).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import os
import time
from decimal import Decimal
from typing import (
    Any,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

import attrs
import httpx
from tenacity import AsyncRetrying, Retrying

from smskit.config import Secret, Settings, redact
from smskit.errors import (
    AmbiguousSendError,
    ConfigurationError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from smskit.models import InboundMessage, Message
from smskit.providers.retrying import NOTHING_SENT, RetryPolicy
from smskit.timeutil import DEFAULT_TZ
from smskit_kolmeya import wire
from smskit_kolmeya.settings import DEFAULT_BASE_URL, KolmeyaSettings, check_base_url

__all__ = ["AsyncKolmeyaClient", "KolmeyaClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound="_ClientBase")
SecretLike = Union[str, Secret]

# Failures that happen before a single byte of the request left: always safe to retry.
_MIN_REPORT_WINDOW = dt.timedelta(minutes=15)


@attrs.frozen
class _Call(Generic[T]):
    """One API call: where, what, how to read the answer, and whether it may send SMS."""

    path: str
    body: Mapping[str, Any]
    parse: Callable[[Any], T]
    send: bool = False


def _ignore(data: Any) -> None:
    return None


def _raw(data: Any) -> Dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {}


def _secret(value: Optional[SecretLike]) -> Optional[Secret]:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value) if value else None


class _ClientBase:
    """Configuration, request building and answer interpretation shared by both clients.

    Options: ``token`` (default ``$SMSKIT_KOLMEYA_TOKEN``), ``base_url`` (default
    ``$SMSKIT_KOLMEYA_BASE_URL`` or Kolmeya's), ``timeout`` (read/write seconds),
    ``connect_timeout``, ``max_attempts`` (for retryable failures), ``max_retry_wait`` (longest
    ``Retry-After`` honoured in-process), default send options ``cost_centre_id``,
    ``sms_api_id`` and ``webhook_url``, ``job_control`` (``"path"`` or ``"body"``, see
    :func:`wire.build_job_request`), ``timezone`` of Kolmeya's timestamps, ``allow_http``,
    and ``clock`` (epoch seconds; tests inject one).

    Kolmeya's ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` response headers are
    honoured before a 429 comes: once few requests are left, the next ones are spread until
    the reset (:class:`wire.RateBudget`).
    """

    def __init__(
        self,
        token: Optional[SecretLike] = None,
        *,
        base_url: Optional[str] = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 4,
        max_retry_wait: float = 60.0,
        cost_centre_id: Optional[int] = None,
        sms_api_id: Optional[int] = None,
        webhook_url: Optional[SecretLike] = None,
        job_control: str = "path",
        timezone: str = DEFAULT_TZ,
        allow_http: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secret = _secret(token if token is not None else os.environ.get("SMSKIT_KOLMEYA_TOKEN"))
        if secret is None:
            raise ConfigurationError(
                "no Kolmeya token: pass token= or set SMSKIT_KOLMEYA_TOKEN")
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        if job_control not in wire.JOB_FORMS:
            raise ConfigurationError(
                f"job_control must be one of {wire.JOB_FORMS}, got {job_control!r}")
        url = base_url or os.environ.get("SMSKIT_KOLMEYA_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = check_base_url(url, allow_http=allow_http)
        self._token = secret
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self.cost_centre_id = cost_centre_id
        self.sms_api_id = sms_api_id
        self._webhook_url = _secret(webhook_url)
        self.job_control = job_control
        self.timezone = timezone
        self._retry = RetryPolicy(max_attempts, max_retry_wait, log)
        self._clock = clock
        self._budget: Optional[wire.RateBudget] = None

    @classmethod
    def from_settings(cls: Type[C], settings: Settings, **extra: Any) -> C:
        """A client configured from ``settings`` (see :mod:`smskit_kolmeya.settings`).

        ``extra`` goes to the constructor (``http=``, ``sleep=``).
        """
        ks = KolmeyaSettings.from_settings(settings)
        return cls(
            ks.token, base_url=ks.base_url, timeout=ks.timeout,
            connect_timeout=ks.connect_timeout, max_attempts=ks.max_attempts,
            max_retry_wait=ks.max_retry_wait, cost_centre_id=ks.cost_centre_id,
            sms_api_id=ks.sms_api_id, webhook_url=ks.webhook_url, job_control=ks.job_control,
            timezone=ks.timezone, allow_http=True, **extra,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, token={self._token!r})"

    @property
    def webhook_url(self) -> Optional[Secret]:
        """The default callback URL sent with every send (a Secret: it carries a token)."""
        return self._webhook_url

    # -- building calls ----------------------------------------------------------------------
    def _secrets(self) -> Tuple[Optional[str], ...]:
        hook = self._webhook_url.reveal() if self._webhook_url else None
        token_param = hook.rpartition("token=")[2] if hook and "token=" in hook else None
        return (self._token.reveal(), hook, token_param)

    def _redact(self, text: str) -> str:
        return redact(text, *self._secrets())

    def _send_options(self, webhook_url: Optional[SecretLike], cost_centre_id: Optional[int],
                      sms_api_id: Optional[int]) -> Dict[str, Any]:
        hook = self._webhook_url if webhook_url is None else _secret(webhook_url)
        return {
            "webhook_url": hook.reveal() if hook else None,
            "cost_centre_id": (self.cost_centre_id if cost_centre_id is None
                               else cost_centre_id),
            "sms_api_id": self.sms_api_id if sms_api_id is None else sms_api_id,
        }

    def _store_calls(self, messages: Sequence[Message], batch_id: str,
                     options: Dict[str, Any]) -> List[_Call[wire.StoreOutcome]]:
        parts = list(wire.chunk(messages, wire.MAX_BATCH))
        calls = []
        for n, part in enumerate(parts, 1):
            reference = batch_id if len(parts) == 1 else f"{batch_id}-{n}"
            body = wire.build_store_request(part, batch_id=reference, **options)
            calls.append(_Call("/sms/store", body, _store_parser(part), send=True))
        return calls

    def _token_call(self, message: Message, reference: Optional[str],
                    options: Dict[str, Any]) -> _Call[wire.StoreOutcome]:
        body = wire.build_store_token_request(message, reference=reference, **options)
        return _Call("/sms/store-token", body, _store_parser([message]), send=True)

    def _request_status_call(self, id: Optional[str],
                             reference: Optional[str]) -> _Call[wire.RequestStatus]:
        body = wire.build_request_status_request(id=id, reference=reference)
        return _Call("/sms/status/request", body, wire.parse_request_status)

    def _replies_call(self, period_hours: int, page: int) -> _Call[wire.RepliesPage]:
        tz = self.timezone
        return _Call("/sms/replys", wire.build_replies_request(period_hours, page),
                     lambda data: wire.parse_replies_page(data, tz))

    def _web_replies_call(self, page: int) -> _Call[wire.RepliesPage]:
        tz = self.timezone
        return _Call("/sms/replys-web", wire.build_web_replies_request(page),
                     lambda data: wire.parse_replies_page(data, tz, web=True))

    def _report_call(self, start: dt.datetime, end: dt.datetime,
                     limit: int) -> _Call[List[wire.ReportRow]]:
        tz = self.timezone
        body = wire.build_report_statuses_request(start, end, limit, tz)
        return _Call("/sms/reports/statuses", body,
                     lambda data: wire.parse_report_statuses(data, tz))

    def _blacklist_calls(self, path: str, phones: Sequence[str]) -> List[_Call[None]]:
        return [_Call(path, wire.build_blacklist_request(part), _ignore)
                for part in wire.chunk(list(phones), wire.MAX_BLACKLIST)]

    def _job_call(self, job_id: int, action: str) -> _Call[Dict[str, Any]]:
        path, body = wire.build_job_request(job_id, action, self.job_control)
        return _Call(path, body, _raw)

    # -- HTTP plumbing ---------------------------------------------------------------------
    def _request_args(self, call: _Call[Any]) -> Dict[str, Any]:
        return {
            "url": self.base_url + call.path,
            "content": json.dumps(call.body, ensure_ascii=False).encode("utf-8"),
            "headers": {
                "Authorization": f"Bearer {self._token.reveal()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            "timeout": self._timeout,
        }

    def _pause(self) -> float:
        """Seconds to wait before the next request, by the last ``X-RateLimit-*`` headers
        seen (:class:`wire.RateBudget`); a wait past ``max_retry_wait`` is a
        :class:`~smskit.errors.RateLimitedError` at once (nothing sent: the caller
        reschedules)."""
        budget = self._budget
        now = self._clock()
        wait = budget.wait(now) if budget is not None else 0.0
        if wait > self.max_retry_wait and budget is not None:
            resets = (budget.reset_at or now) - now
            raise RateLimitedError(
                f"Kolmeya's rate limit is nearly used up ({budget.remaining} request(s) left "
                f"of {budget.limit or '?'}, reset in {resets:.0f} s): nothing was sent",
                retry_after=wait, status_code=None)
        if wait > 0:
            log.info("Kolmeya's rate limit: %d request(s) left, waiting %.1f s",
                     budget.remaining if budget is not None else 0, wait)
        return wait

    def _interpret(self, call: _Call[T], response: httpx.Response) -> T:
        log.debug("Kolmeya POST %s -> HTTP %s", call.path, response.status_code)
        budget = wire.RateBudget.from_headers(response.headers, self._clock())
        if budget is not None:
            self._budget = budget
        data: Any = None
        decoded = True
        if response.content.strip():
            try:
                data = json.loads(response.content)
            except ValueError:
                decoded = False
        if not 200 <= response.status_code < 300:
            raise wire.error_for_response(
                response.status_code, data, response.headers, endpoint=call.path,
                send=call.send, secrets=self._secrets())
        try:
            if not decoded:
                raise ProviderError(f"Kolmeya POST {call.path} answered with a body that is not "
                                    "JSON")
            errors = wire.errors_in_body(data) if isinstance(data, dict) else []
            if errors and "errors" in data and "id" not in data:
                detail = self._redact("; ".join(errors))
                raise ProviderError(f"Kolmeya POST {call.path} answered HTTP "
                                    f"{response.status_code} with errors: {detail}",
                                    status_code=response.status_code, errors=errors)
            return call.parse(data)
        except ProviderError as exc:
            if call.send:
                raise AmbiguousSendError(
                    f"{self._redact(str(exc))}; the messages may have been sent: reconcile "
                    "before resending", status_code=response.status_code,
                    errors=exc.errors) from exc
            raise

    def _transport_error(self, call: _Call[Any], exc: httpx.HTTPError) -> ProviderError:
        what = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if isinstance(exc, NOTHING_SENT):
            return TransientProviderError(
                f"could not connect to Kolmeya for POST {call.path} ({what}); nothing was sent")
        if call.send:
            return AmbiguousSendError(
                f"Kolmeya POST {call.path} failed after the request was sent ({what}); the "
                "messages may have been sent: reconcile before resending")
        return TransientProviderError(f"Kolmeya POST {call.path} failed ({what})")

    def _split(self, start: dt.datetime, end: dt.datetime, got: int, limit: int,
               pending: Deque[Tuple[dt.datetime, dt.datetime]]) -> bool:
        """Queue the halves of a window that hit ``limit`` rows; False when it cannot split."""
        if got < limit:
            return False
        middle = (start + (end - start) / 2).replace(second=0, microsecond=0)
        if end - start <= _MIN_REPORT_WINDOW or not start < middle < end:
            log.warning("Kolmeya report %s .. %s returned %d rows (the limit): some rows are "
                        "missing", start.isoformat(), end.isoformat(), got)
            return False
        pending.appendleft((middle, end))
        pending.appendleft((start, middle))
        return True


def _store_parser(messages: Sequence[Message]) -> Callable[[Any], wire.StoreOutcome]:
    return lambda data: wire.parse_store_response(data, messages)


def _reply_period(period_hours: int) -> int:
    return max(1, min(wire.MAX_REPLY_PERIOD_HOURS, period_hours))


class KolmeyaClient(_ClientBase):
    """Synchronous Kolmeya client.

    ``http`` is an injected :class:`httpx.Client` (closed by you, not by :meth:`close`);
    ``sleep`` is what retries wait with (tests pass a recorder). Other options: see the base.
    """

    def __init__(self, token: Optional[SecretLike] = None, *,
                 http: Optional[httpx.Client] = None,
                 sleep: Callable[[float], None] = time.sleep, **options: Any) -> None:
        super().__init__(token, **options)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()
        self._sleep = sleep

    def _execute(self, call: _Call[T]) -> T:
        retrying = Retrying(sleep=self._sleep, **self._retry.options())
        result: T = retrying(self._attempt, call)
        return result

    def _attempt(self, call: _Call[T]) -> T:
        wait = self._pause()
        if wait > 0:
            self._sleep(wait)
        try:
            response = self._http.post(**self._request_args(call))
        except httpx.TransportError as exc:
            raise self._transport_error(call, exc) from exc
        return self._interpret(call, response)

    def iter_send_batch(self, messages: Sequence[Message], *, batch_id: str,
                        webhook_url: Optional[SecretLike] = None,
                        cost_centre_id: Optional[int] = None,
                        sms_api_id: Optional[int] = None) -> Iterator[wire.StoreOutcome]:
        """Send ``messages`` in requests of at most 1000, yielding each request's outcome.

        One request keeps ``batch_id`` as its reference; with several, request *n* is
        ``f"{batch_id}-{n}"``. Every body is built (and every phone checked) before the first
        request, so a bad phone sends nothing.
        """
        options = self._send_options(webhook_url, cost_centre_id, sms_api_id)
        for call in self._store_calls(messages, batch_id, options):
            yield self._execute(call)

    def send_batch(self, messages: Sequence[Message], *, batch_id: str,
                   webhook_url: Optional[SecretLike] = None,
                   cost_centre_id: Optional[int] = None,
                   sms_api_id: Optional[int] = None) -> List[wire.StoreOutcome]:
        """All outcomes of :meth:`iter_send_batch` (use that to keep earlier outcomes if a
        later request fails)."""
        return list(self.iter_send_batch(messages, batch_id=batch_id, webhook_url=webhook_url,
                                         cost_centre_id=cost_centre_id,
                                         sms_api_id=sms_api_id))

    def send_token(self, message: Message, *, reference: Optional[str] = None,
                   webhook_url: Optional[SecretLike] = None,
                   cost_centre_id: Optional[int] = None,
                   sms_api_id: Optional[int] = None) -> wire.StoreOutcome:
        """Send one OTP/token SMS through ``sms/store-token`` (no links, no 0800 numbers)."""
        options = self._send_options(webhook_url, cost_centre_id, sms_api_id)
        return self._execute(self._token_call(message, reference, options))

    def request_status(self, id: Optional[str] = None,
                       reference: Optional[str] = None) -> wire.RequestStatus:
        """The status of a request and its messages, by request uuid or by our reference."""
        return self._execute(self._request_status_call(id, reference))

    def message_status(self, id: str) -> wire.MessageStatus:
        """The status of one message by Kolmeya's message uuid."""
        return self._execute(_Call("/sms/status/message", wire.build_message_status_request(id),
                                   wire.parse_message_status))

    def balance(self) -> Decimal:
        """The account balance (BRL) as an exact Decimal."""
        return self._execute(_Call("/sms/balance", {}, wire.parse_balance))

    def cost_centres(self) -> List[wire.CostCentre]:
        """The account's cost centres (``cost_centre_id`` values; Kolmeya's ``sms/segments``)."""
        return self._execute(_Call("/sms/segments", {}, wire.parse_cost_centres))

    def replies(self, period_hours: int = 24, *, max_pages: int = 100) -> List[InboundMessage]:
        """Replies of the last ``period_hours`` (clamped to 1..168), following every page."""
        period = _reply_period(period_hours)
        out: List[InboundMessage] = []
        for page in range(1, max_pages + 1):
            result = self._execute(self._replies_call(period, page))
            out.extend(result.replies)
            if not result.has_next:
                return out
        log.warning("Kolmeya replies: stopped after %d pages", max_pages)
        return out

    def web_replies(self, *, max_pages: int = 100) -> List[InboundMessage]:
        """Replies to campaigns sent from Kolmeya's web panel (``sms/replys-web``), every
        page; their reply ids are ``web:<id>``."""
        out: List[InboundMessage] = []
        for page in range(1, max_pages + 1):
            result = self._execute(self._web_replies_call(page))
            out.extend(result.replies)
            if not result.has_next:
                return out
        log.warning("Kolmeya panel replies: stopped after %d pages", max_pages)
        return out

    def report_statuses(self, start: dt.datetime, end: dt.datetime, *,
                        limit: int = wire.MAX_REPORT_LIMIT,
                        now: Optional[dt.datetime] = None) -> List[wire.ReportRow]:
        """Per-message report rows for ``[start, end]``, split into windows of at most 7 days
        (a window returning ``limit`` rows is split in halves down to 15 minutes)."""
        pending = collections.deque(wire.report_windows(start, end, now=now))
        rows: List[wire.ReportRow] = []
        while pending:
            window_start, window_end = pending.popleft()
            got = self._execute(self._report_call(window_start, window_end, limit))
            if not self._split(window_start, window_end, len(got), limit, pending):
                rows.extend(got)
        return rows

    def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add numbers (E.164 or national) to Kolmeya's blacklist, 1000 per request."""
        for call in self._blacklist_calls("/blacklist/store", phones):
            self._execute(call)

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove numbers from Kolmeya's blacklist, 1000 per request."""
        for call in self._blacklist_calls("/blacklist/destroy", phones):
            self._execute(call)

    def pause_job(self, job_id: int) -> Dict[str, Any]:
        """Pause a running campaign job (its JSON answer, ``{}`` when empty)."""
        return self._execute(self._job_call(job_id, "pause"))

    def play_job(self, job_id: int) -> Dict[str, Any]:
        """Resume a paused campaign job."""
        return self._execute(self._job_call(job_id, "play"))

    def close(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> KolmeyaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncKolmeyaClient(_ClientBase):
    """Asynchronous Kolmeya client: the same methods as :class:`KolmeyaClient`, awaited.

    ``http`` is an injected :class:`httpx.AsyncClient`; ``sleep`` an async sleep.
    """

    def __init__(self, token: Optional[SecretLike] = None, *,
                 http: Optional[httpx.AsyncClient] = None,
                 sleep: Optional[Callable[[float], Awaitable[None]]] = None,
                 **options: Any) -> None:
        super().__init__(token, **options)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._sleep = sleep

    async def _execute(self, call: _Call[T]) -> T:
        extra: Dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        retrying = AsyncRetrying(**extra, **self._retry.options())
        result: T = await retrying(self._attempt, call)
        return result

    async def _attempt(self, call: _Call[T]) -> T:
        wait = self._pause()
        if wait > 0:
            await (self._sleep or asyncio.sleep)(wait)
        try:
            response = await self._http.post(**self._request_args(call))
        except httpx.TransportError as exc:
            raise self._transport_error(call, exc) from exc
        return self._interpret(call, response)

    async def send_batch(self, messages: Sequence[Message], *, batch_id: str,
                         webhook_url: Optional[SecretLike] = None,
                         cost_centre_id: Optional[int] = None,
                         sms_api_id: Optional[int] = None) -> List[wire.StoreOutcome]:
        """Send in requests of at most 1000 (see :meth:`KolmeyaClient.iter_send_batch`)."""
        options = self._send_options(webhook_url, cost_centre_id, sms_api_id)
        return [await self._execute(call)
                for call in self._store_calls(messages, batch_id, options)]

    async def send_token(self, message: Message, *, reference: Optional[str] = None,
                         webhook_url: Optional[SecretLike] = None,
                         cost_centre_id: Optional[int] = None,
                         sms_api_id: Optional[int] = None) -> wire.StoreOutcome:
        """Send one OTP/token SMS through ``sms/store-token``."""
        options = self._send_options(webhook_url, cost_centre_id, sms_api_id)
        return await self._execute(self._token_call(message, reference, options))

    async def request_status(self, id: Optional[str] = None,
                             reference: Optional[str] = None) -> wire.RequestStatus:
        """The status of a request and its messages, by request uuid or by our reference."""
        return await self._execute(self._request_status_call(id, reference))

    async def message_status(self, id: str) -> wire.MessageStatus:
        """The status of one message by Kolmeya's message uuid."""
        return await self._execute(_Call("/sms/status/message",
                                         wire.build_message_status_request(id),
                                         wire.parse_message_status))

    async def balance(self) -> Decimal:
        """The account balance (BRL) as an exact Decimal."""
        return await self._execute(_Call("/sms/balance", {}, wire.parse_balance))

    async def cost_centres(self) -> List[wire.CostCentre]:
        """The account's cost centres (Kolmeya's ``sms/segments``)."""
        return await self._execute(_Call("/sms/segments", {}, wire.parse_cost_centres))

    async def replies(self, period_hours: int = 24, *,
                      max_pages: int = 100) -> List[InboundMessage]:
        """Replies of the last ``period_hours`` (clamped to 1..168), following every page."""
        period = _reply_period(period_hours)
        out: List[InboundMessage] = []
        for page in range(1, max_pages + 1):
            result = await self._execute(self._replies_call(period, page))
            out.extend(result.replies)
            if not result.has_next:
                return out
        log.warning("Kolmeya replies: stopped after %d pages", max_pages)
        return out

    async def web_replies(self, *, max_pages: int = 100) -> List[InboundMessage]:
        """Replies to campaigns sent from Kolmeya's web panel, every page."""
        out: List[InboundMessage] = []
        for page in range(1, max_pages + 1):
            result = await self._execute(self._web_replies_call(page))
            out.extend(result.replies)
            if not result.has_next:
                return out
        log.warning("Kolmeya panel replies: stopped after %d pages", max_pages)
        return out

    async def report_statuses(self, start: dt.datetime, end: dt.datetime, *,
                              limit: int = wire.MAX_REPORT_LIMIT,
                              now: Optional[dt.datetime] = None) -> List[wire.ReportRow]:
        """Per-message report rows for ``[start, end]`` in windows of at most 7 days."""
        pending = collections.deque(wire.report_windows(start, end, now=now))
        rows: List[wire.ReportRow] = []
        while pending:
            window_start, window_end = pending.popleft()
            got = await self._execute(self._report_call(window_start, window_end, limit))
            if not self._split(window_start, window_end, len(got), limit, pending):
                rows.extend(got)
        return rows

    async def blacklist_add(self, phones: Sequence[str]) -> None:
        """Add numbers to Kolmeya's blacklist, 1000 per request."""
        for call in self._blacklist_calls("/blacklist/store", phones):
            await self._execute(call)

    async def blacklist_remove(self, phones: Sequence[str]) -> None:
        """Remove numbers from Kolmeya's blacklist, 1000 per request."""
        for call in self._blacklist_calls("/blacklist/destroy", phones):
            await self._execute(call)

    async def pause_job(self, job_id: int) -> Dict[str, Any]:
        """Pause a running campaign job."""
        return await self._execute(self._job_call(job_id, "pause"))

    async def play_job(self, job_id: int) -> Dict[str, Any]:
        """Resume a paused campaign job."""
        return await self._execute(self._job_call(job_id, "play"))

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncKolmeyaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
