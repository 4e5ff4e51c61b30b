"""What a provider's answer means for a claimed batch, without any I/O (:mod:`smskit.outbox`,
steps 6 and 7).

:mod:`smskit.outbox.dispatching` claims a batch, asks the provider, then settles the batch;
between the two I/O steps sits :func:`decide`: given the claimed batch (with the messages the
blacklist canceled at the last moment) and the provider's results *or* the exception it raised,
what to record, what certainly was never sent (back to the queue), and what may have arrived
(the batch waits for reconciliation). :func:`decide_reconcile` does the same for a
reconciliation's answer. The synchronous loops of :mod:`~smskit.outbox.dispatching` and the
asynchronous ones of :mod:`~smskit.outbox.aio` share both, as httpx's two clients share their
request building: they differ only in how they wait for the provider and the store.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple, Union

import attrs

from smskit.errors import PartialSendError, ProviderError, RequestRejectedError
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.provider import ReconcileResult
from smskit.store.base import BatchInfo

__all__ = [
    "AMBIGUOUS",
    "CONFIRMED",
    "CRASHED",
    "PARTIAL",
    "REFUSED",
    "RELEASED",
    "RESEND",
    "SENT",
    "UNKNOWN",
    "Claimed",
    "ReconcileDecision",
    "SendDecision",
    "decide",
    "decide_reconcile",
]

#: The provider answered: record its results (a message without one may have gone out).
SENT = "sent"
#: The gateway refused the request as a whole: every message is ``rejected``.
REFUSED = "refused"
#: The batch stopped part-way: record what is known, requeue the unsent, reconcile the rest.
PARTIAL = "partial"
#: Nothing can have reached the gateway: the batch goes back to the queue.
RELEASED = "released"
#: The request may have arrived: the batch waits for reconciliation.
AMBIGUOUS = "ambiguous"
#: The provider raised something that is not a ProviderError: as ambiguous, then re-raised.
CRASHED = "crashed"

#: Reconciliation: the gateway knows the batch; record what it has, resend what it lacks.
CONFIRMED = "confirmed"
#: Reconciliation: the gateway never received the request; send it again.
RESEND = "resend"
#: Reconciliation failed (a ProviderError): try again later, never resend.
UNKNOWN = "unknown"

#: What ``send_batch`` gave: its results, or what it raised.
SendOutcome = Union[Sequence[SendResult], BaseException]
#: What ``reconcile`` gave: its answer, or what it raised.
ReconcileOutcome = Union[ReconcileResult, BaseException]


@attrs.frozen
class Claimed:
    """A claimed batch, ready for the provider: ``canceled`` are the results of the messages
    the blacklist stopped at the last moment, ``to_send`` the others."""

    batch: BatchInfo
    messages: Sequence[Message]
    canceled: Tuple[SendResult, ...]
    to_send: Tuple[Message, ...]

    @classmethod
    def check(cls, batch: BatchInfo, messages: Sequence[Message],
              blocked: Iterable[str]) -> Claimed:
        """The batch with the blacklisted numbers (``blocked``) taken out as ``canceled``."""
        stop = set(blocked)
        canceled = tuple(SendResult(message_id=m.id, state=State.CANCELED,
                                    error_code="blacklisted",
                                    error_text="number is on the blacklist")
                         for m in messages if m.phone in stop)
        return cls(batch, messages, canceled, tuple(m for m in messages if m.phone not in stop))


@attrs.frozen
class SendDecision:
    """What to do with a claimed batch once the provider answered (see the verdicts above).

    ``results`` are the provider's results to record (a ``REFUSED`` batch's ``rejected``
    ones), ``unsent`` the messages certainly never sent, ``error`` what the provider raised
    and ``go_on`` whether dispatching continues with the next batch.
    """

    verdict: str
    claimed: Claimed
    results: Tuple[SendResult, ...] = ()
    unsent: Tuple[Message, ...] = ()
    error: Union[BaseException, None] = None
    go_on: bool = False

    @property
    def reason(self) -> str:
        """Why the batch did not simply go out (empty when it did)."""
        if self.error is None:
            return ""
        if self.verdict == CRASHED:
            return f"provider raised an unexpected error: {self.error!r}"
        return str(self.error)


def decide(claimed: Claimed, outcome: SendOutcome) -> SendDecision:
    """The decision for ``claimed`` given what ``send_batch`` returned or raised."""
    if not isinstance(outcome, BaseException):
        return SendDecision(SENT, claimed, results=tuple(outcome), go_on=True)
    if isinstance(outcome, RequestRejectedError):
        # Nothing went out, and the same request would be refused again.
        rejected = tuple(SendResult(message_id=m.id, state=State.REJECTED, error_code="request",
                                    error_text=str(outcome)) for m in claimed.to_send)
        return SendDecision(REFUSED, claimed, results=rejected, error=outcome, go_on=True)
    if isinstance(outcome, PartialSendError):
        unsent = set(outcome.unsent)
        return SendDecision(PARTIAL, claimed, results=tuple(outcome.results),
                            unsent=tuple(m for m in claimed.to_send if m.id in unsent),
                            error=outcome)
    if isinstance(outcome, ProviderError):
        if outcome.sent_nothing:
            return SendDecision(RELEASED, claimed, unsent=claimed.to_send, error=outcome)
        return SendDecision(AMBIGUOUS, claimed, error=outcome)
    return SendDecision(CRASHED, claimed, error=outcome)  # the request may have gone out


@attrs.frozen
class ReconcileDecision:
    """What to do with an unsettled batch once the gateway answered: ``results`` to record
    (``CONFIRMED``), ``missing`` the ids it has no trace of (back to the queue), ``statuses``
    the delivery reports it gave on the way."""

    verdict: str
    messages: Tuple[Message, ...]
    results: Tuple[SendResult, ...] = ()
    missing: Tuple[str, ...] = ()
    statuses: Tuple[StatusEvent, ...] = ()
    error: Union[BaseException, None] = None


def decide_reconcile(messages: Sequence[Message], outcome: ReconcileOutcome) -> ReconcileDecision:
    """The decision for a batch's still-``outgoing`` ``messages`` given what ``reconcile``
    returned or raised."""
    ours = tuple(messages)
    if isinstance(outcome, ProviderError):
        return ReconcileDecision(UNKNOWN, ours, error=outcome)
    if isinstance(outcome, BaseException):
        return ReconcileDecision(CRASHED, ours, error=outcome)
    if not outcome.known:
        return ReconcileDecision(RESEND, ours)
    wanted = {m.id for m in ours}
    results = tuple(r for r in outcome.results if r.message_id in wanted)
    found = {r.message_id for r in results}
    return ReconcileDecision(CONFIRMED, ours, results=results,
                             missing=tuple(m.id for m in ours if m.id not in found),
                             statuses=tuple(outcome.statuses))
