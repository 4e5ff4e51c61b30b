"""The Twilio provider: :class:`smskit.provider.Provider` over :class:`TwilioClient`.

Twilio takes one message per request, so ``send_batch`` sends the batch's messages one after
the other and returns one result per message. When a request fails part-way, the messages
already sent must not go out again, so the provider follows the contract strictly:

* a refusal about one recipient (invalid number 21211, opted out 21610, not reachable...) is that
  message's ``rejected`` result, and the batch goes on;
* any other failure before anything of the batch was sent is raised as it is (a "sent nothing"
  error lets the pipeline send the batch later);
* any failure after something was sent, and any ambiguous failure (a timeout after the create
  may have arrived), raises :class:`~smskit.errors.PartialSendError` (an
  :class:`~smskit.errors.AmbiguousSendError`) carrying what is known: the pipeline records the
  results, puts the messages never sent back in the queue and reconciles only the one whose
  create may have arrived, never resending it blindly.

:meth:`TwilioProvider.reconcile` answers from an in-process journal of the batch (messages sent,
refused, never attempted) and, for the rest (the ambiguous one, or every message after a
restart), lists Twilio's messages to each number and matches them (:mod:`smskit_twilio.reconcile`).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from decimal import Decimal
from typing import (
    Any,
    Callable,
    Dict,
    List,
    NoReturn,
    Optional,
    Sequence,
    Set,
    Tuple,
)
from urllib.parse import urlsplit

import attrs

from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    ConfigurationError,
    EmptyBodyError,
    InvalidPhoneError,
    PartialSendError,
    ProviderError,
    ValidationError,
)
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.provider import Capabilities, Provider, ReconcileResult, WebhookPayload
from smskit.webhooks.auth import AuthResult
from smskit.webhooks.media import FORM
from smskit.webhooks.request import WebhookRequest
from smskit_twilio import reconcile as matching
from smskit_twilio import wire
from smskit_twilio.client import TwilioClient
from smskit_twilio.settings import TwilioSettings, webhook_url
from smskit_twilio.webhooks import SignatureCheck, opt_out_keyword, parse_params

__all__ = ["PartialSendError", "TwilioProvider"]

log = logging.getLogger(__name__)
_JOURNAL_SIZE = 512


@attrs.define
class _Journal:
    """What this process knows of one batch it sent."""

    results: Dict[str, SendResult] = attrs.field(factory=dict)
    attempted: Dict[str, dt.datetime] = attrs.field(factory=dict)
    unsent: Set[str] = attrs.field(factory=set)


def _rejected(message: Message, code: str, text: str) -> SendResult:
    return SendResult(message_id=message.id, state=State.REJECTED, error_code=code,
                      error_text=text)


def _pairs(data: object) -> Tuple[Tuple[str, str], ...]:
    """The form fields the gate decoded; ValidationError for anything else (a caller that
    hands the provider another body)."""
    if not isinstance(data, (list, tuple)) or not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in data):
        raise ValidationError("malformed Twilio webhook: the body is not a decoded form")
    return tuple(data)


class TwilioProvider(Provider):
    """Sends through Twilio's Messages API and answers reconciliation, status queries,
    balance, webhooks and reply polling. Build it with :meth:`from_settings`."""

    name = wire.PROVIDER
    #: The media types of Twilio's webhooks (for the webhook gate).
    webhook_media_types: Tuple[str, ...] = (FORM,)

    def __init__(self, client: TwilioClient, settings: TwilioSettings, *,
                 owns_client: bool = True,
                 clock: Optional[Callable[[], dt.datetime]] = None) -> None:
        self.client = client
        self.settings = settings
        self.max_batch = settings.max_batch
        self.capabilities = Capabilities(
            status_query=True, reconcile=True, balance=True, blacklist=False, webhooks=True,
            reply_polling=bool(settings.from_ and wire.is_e164(settings.from_)))
        self._owns_client = owns_client
        self._clock = clock or utcnow
        self._journal: collections.OrderedDict[str, _Journal] = collections.OrderedDict()
        self._check = (SignatureCheck(settings.auth_token, settings.webhook_shared_key)
                       if settings.verify_signatures else None)

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> TwilioProvider:
        """A provider reading the ``twilio_*`` settings (``client_options`` such as ``http=``
        go to :class:`TwilioClient`)."""
        return cls(TwilioClient.from_settings(settings, **client_options),
                   TwilioSettings.from_settings(settings))

    def __repr__(self) -> str:
        return f"TwilioProvider(client={self.client!r})"

    # -- sending ----------------------------------------------------------------------------
    def _remember(self, batch_id: str, journal: _Journal) -> None:
        self._journal[batch_id] = journal
        while len(self._journal) > _JOURNAL_SIZE:
            self._journal.popitem(last=False)

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        """Send each message with its own request; one result per message (see the module
        docstring for what a failure part-way raises)."""
        if len(messages) > self.max_batch:
            raise ValidationError(
                f"twilio batches hold at most {self.max_batch} messages, got {len(messages)}")
        journal = _Journal()
        self._remember(batch_id, journal)
        results: List[SendResult] = []
        for index, message in enumerate(messages):
            started = self._clock()
            try:
                created = self.client.send_message(message)
            except (InvalidPhoneError, EmptyBodyError) as exc:
                result = _rejected(message, "invalid_phone" if isinstance(
                    exc, InvalidPhoneError) else "empty_body", str(exc))
            except wire.TwilioRequestError as exc:
                if not exc.about_recipient:
                    self._stop(journal, results, messages, index, exc, started)
                code = exc.code or 0
                result = attrs.evolve(
                    _rejected(message, str(code), wire.ERROR_TEXT.get(code, str(exc))),
                    opted_out=code == wire.OPTED_OUT)
            except ProviderError as exc:
                self._stop(journal, results, messages, index, exc, started)
            else:
                result = SendResult(message_id=message.id, state=State.SENT,
                                    provider_message_id=created.sid)
            journal.results[message.id] = result
            results.append(result)
        return results

    def _stop(self, journal: _Journal, results: List[SendResult], messages: Sequence[Message],
              index: int, exc: ProviderError, started: dt.datetime) -> NoReturn:
        """Raise for a failure at ``messages[index]`` (see the module docstring)."""
        current = messages[index]
        later = [m.id for m in messages[index + 1:]]
        if exc.sent_nothing:
            journal.unsent.update([current.id, *later])
            if not any(r.state is State.SENT for r in results):
                raise exc
            raise PartialSendError(
                f"{exc}; stopped after {index} of {len(messages)} messages, some of which were "
                "sent: reconcile the batch", results=results, unsent=[current.id, *later],
                status_code=exc.status_code) from exc
        journal.attempted[current.id] = started
        journal.unsent.update(later)
        raise PartialSendError(
            f"{exc} (message {index + 1} of {len(messages)}, {current.id})", results=results,
            ambiguous=[current.id], unsent=later, status_code=exc.status_code) from exc

    # -- reconciliation ---------------------------------------------------------------------
    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        """What became of ``messages`` of batch ``batch_id``.

        Results come from this process's journal when it has the batch; every other message is
        looked up by listing (module :mod:`smskit_twilio.reconcile`). ``known`` is ``False``
        when nothing of the batch reached Twilio. Raises
        :class:`~smskit.errors.AmbiguousSendError` when it cannot decide yet (too soon after
        the failed request, a hidden body, a list too long to read): never resend then.
        """
        journal = self._journal.get(batch_id)
        results: Dict[str, SendResult] = {}
        lookups: List[matching.Lookup] = []
        for message in messages:
            if journal is not None and message.id in journal.results:
                results[message.id] = journal.results[message.id]
            elif journal is not None and message.id in journal.unsent:
                continue
            else:
                attempted = journal.attempted.get(message.id) if journal is not None else None
                lookups.append(matching.Lookup(message, attempted))
        statuses: List[StatusEvent] = []
        if lookups:
            taken = matching.owned_sids(list(results.values())) | {
                m.provider_message_id for m in messages if m.provider_message_id}
            found = self._look_up(lookups, taken)
            for result in found.results:
                results[result.message_id] = result
            statuses = found.statuses
        ordered = [results[m.id] for m in messages if m.id in results]
        return ReconcileResult(known=bool(ordered), results=ordered, statuses=statuses)

    def _is_ours(self, candidate: wire.TwilioMessage) -> bool:
        ts = self.settings
        return bool((ts.from_ and candidate.from_ == ts.from_) or (
            ts.messaging_service_sid
            and candidate.messaging_service_sid == ts.messaging_service_sid))

    def _too_soon(self, lookup: matching.Lookup, now: dt.datetime) -> bool:
        # Only this process knows when it sent a create; a batch another process marked
        # ambiguous failed at least a read timeout (or a full 5xx answer) after its request.
        if lookup.attempted_at is None:
            return False
        return now - lookup.attempted_at < dt.timedelta(seconds=self.settings.reconcile_grace)

    def _look_up(self, lookups: Sequence[matching.Lookup], taken: Set[str]) -> matching.Match:
        ts = self.settings
        now = self._clock()
        early = [lk.message.id for lk in lookups if self._too_soon(lk, now)]
        if early:
            raise AmbiguousSendError(
                f"too soon to tell whether Twilio created {', '.join(early[:3])}: a request "
                f"may still be processed; reconcile again after {ts.reconcile_grace:g} s")
        skew = dt.timedelta(seconds=ts.reconcile_skew)
        near = dt.timedelta(seconds=ts.reconcile_skew + ts.timeout)
        sender = ts.from_ if ts.from_ and not ts.messaging_service_sid else None
        outcome = matching.Match()
        for phone, group in matching.by_phone(lookups).items():
            listed = self.client.list_messages(to=phone, from_=sender,
                                               page_size=wire.MAX_PAGE_SIZE,
                                               max_pages=ts.reconcile_max_pages)
            if not listed.complete:
                raise AmbiguousSendError(
                    f"Twilio lists more than {ts.reconcile_max_pages * wire.MAX_PAGE_SIZE} "
                    f"messages to {phone}: cannot be sure what became of "
                    f"{', '.join(lk.message.id for lk in group[:3])}")
            found = matching.match_sent(group, listed.messages, is_ours=self._is_ours,
                                        skew=skew, near=near, taken=taken)
            outcome.results.extend(found.results)
            outcome.statuses.extend(found.statuses)
            outcome.undecided.extend(found.undecided)
        if outcome.undecided:
            raise AmbiguousSendError("cannot settle the batch yet: " + "; ".join(
                outcome.undecided[:3]))
        return outcome

    # -- queries ----------------------------------------------------------------------------
    def message_status(self, provider_message_id: str) -> StatusEvent:
        """The current status of one message (by its SID) as a status event."""
        return self.client.fetch_message(provider_message_id).to_event()

    def balance(self) -> Decimal:
        """The account balance in the account's currency (``settings``: ``USD`` usually)."""
        return self.client.balance().amount

    def poll_replies(self, since: Optional[dt.datetime] = None) -> List[InboundMessage]:
        """Messages received on ``twilio_from`` since ``since`` (default: the last 24 h)."""
        number = self.settings.from_
        if not number or not wire.is_e164(number):
            raise ConfigurationError("polling replies needs twilio_from to be a phone number")
        since = since or self._clock() - dt.timedelta(hours=24)
        listed = self.client.list_messages(to=number, date_sent_after=since.date(),
                                           page_size=wire.MAX_PAGE_SIZE,
                                           max_pages=self.settings.reconcile_max_pages)
        replies = []
        for item in listed.messages:
            when = item.date_sent or item.date_created
            if item.outbound or not item.from_ or (when is not None and when < since):
                continue
            body = item.body or ""
            replies.append(InboundMessage(provider=self.name, provider_reply_id=item.sid,
                                          phone=item.from_, body=body,
                                          received_at=when or self._clock(),
                                          opt_out=opt_out_keyword(body), raw=item.raw))
        return replies

    # -- webhooks ---------------------------------------------------------------------------
    def signed_url(self, request: WebhookRequest) -> Optional[str]:
        """The URL Twilio signed for ``request``: with ``public_url``, its scheme, host and
        path prefix followed by the path and query the request arrived with (a proxy in
        front of the server changes the host, and may strip a prefix); without it, the URL
        as called. ``None`` when neither is known."""
        if request.url is None:
            if not self.settings.public_url:
                return None
            # A receiver that does not say what was called: the URL we gave Twilio.
            return webhook_url(self.settings.public_url, request.kind,
                               self.settings.webhook_secret)
        if not self.settings.public_url:
            return request.url
        called = urlsplit(request.url)
        base = self.settings.public_url.strip().rstrip("/")
        return f"{base}{called.path}" + (f"?{called.query}" if called.query else "")

    def verify_webhook(self, request: WebhookRequest) -> AuthResult:
        """Check ``X-Twilio-Signature`` over :meth:`signed_url` and the form fields (the
        gate calls this after the smskit token): no header is ``MISSING`` (401), a signature
        that does not match ``WRONG`` (403). With ``twilio_verify_signatures=false``
        everything passes."""
        if self._check is None:
            return AuthResult.OK
        url = self.signed_url(request)
        if url is None:
            log.warning("Twilio webhook refused: the URL Twilio signed is unknown (set "
                        "SMSKIT_PUBLIC_URL)")
            return AuthResult.WRONG
        return self._check.verify(url, request.headers, _pairs(request.data))

    def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
        """The events of a callback the gate decoded (``request.data``: the form's
        ``(name, value)`` pairs); the fields decide whether it is a status or a reply."""
        return parse_params(_pairs(request.data), request.kind)

    def close(self) -> None:
        """Close the client (when this provider created it)."""
        if self._owns_client:
            self.client.close()
