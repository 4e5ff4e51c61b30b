"""What smskit knows of each provider's reconciliation lookup, and why it may trust it.

After a send whose answer was lost, :func:`smskit.outbox.reconcile` asks the gateway about the
request (:meth:`smskit.provider.Provider.reconcile`). The form of that question may be
documented only second-hand (Kolmeya's ``sms/status/request`` by ``reference``): a gateway
that does not support it may answer "not found" for every request, and believing that would
send the same SMS again. So a "never received" answer is trusted only from a **proven** form:
one that, asked about a request smskit knows the gateway accepted, found it.

* Ordinary successful sends leave a **witness** (:meth:`Lookups.saw_accepted`): a batch and one
  of its messages the gateway accepted, refreshed every :data:`WITNESS_REFRESH`.
* When an answer says "never received" and its form (:attr:`ReconcileResult.form
  <smskit.provider.ReconcileResult.form>`) is not proven, reconciliation asks the same
  question about the witness (:meth:`Lookups.question`, then :meth:`Lookups.answer` with what
  the provider said), as if its answer had been lost too. The
  form is **proven** when the answer names the witness message as accepted (with the same
  gateway id), and a proof is trusted for :data:`PROOF_TTL`; a probe that finds nothing, or
  is refused (a 4xx), leaves it unproven (tried again at most every :data:`PROBE_EVERY`); one
  that fails in passing (a timeout, a 5xx) proves nothing either way.

Witnesses and proofs live in the store's key/value state (``lookup:witness:<provider>`` and
``lookup:proof:<provider>:<form>``) when it has one (:class:`~smskit.store.outreach.OutreachStore`),
so every process shares them; otherwise in memory.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import attrs

from smskit.models import Message, SendResult, State
from smskit.outbox.decisions import definite, form_label
from smskit.provider import Provider, ReconcileResult
from smskit.store.base import Store
from smskit.store.outreach import OutreachStore

__all__ = ["HOLD_RETRY", "PROBE_EVERY", "PROOF_TTL", "WITNESS_REFRESH", "Lookups", "Proof",
           "Question", "Witness"]

log = logging.getLogger(__name__)

#: How often an ordinary send replaces the witness (a recent one is surely still known).
WITNESS_REFRESH = dt.timedelta(minutes=10)
#: How long a proven form is trusted before it is probed again.
PROOF_TTL = dt.timedelta(hours=24)
#: The least time between two probes of an unproven form.
PROBE_EVERY = dt.timedelta(minutes=1)
#: The least time between two questions about the same held batch (in one process).
HOLD_RETRY = dt.timedelta(minutes=1)

_WITNESS = "lookup:witness:"
_PROOF = "lookup:proof:"


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _moment(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    return dt.datetime.fromisoformat(value)


@attrs.frozen(kw_only=True)
class Witness:
    """A request the gateway accepted: our batch id and one of its messages."""

    provider: str
    batch_id: str
    message_id: str
    provider_message_id: Optional[str]
    at: dt.datetime

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"batch_id": self.batch_id, "message_id": self.message_id,
                           "provider_message_id": self.provider_message_id,
                           "at": _iso(self.at)})

    @classmethod
    def from_json(cls, provider: str, text: str) -> Witness:
        """A witness from its stored form (ValueError when malformed)."""
        data = json.loads(text)
        return cls(provider=provider, batch_id=str(data["batch_id"]),
                   message_id=str(data["message_id"]),
                   provider_message_id=data.get("provider_message_id"),
                   at=_moment(data.get("at")))


@attrs.frozen(kw_only=True)
class Proof:
    """The last probe of one lookup form: whether it found the witness, when, and how."""

    provider: str
    form: str
    proven: bool
    at: dt.datetime
    detail: str

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"proven": self.proven, "at": _iso(self.at), "detail": self.detail})

    @classmethod
    def from_json(cls, provider: str, form: str, text: str) -> Proof:
        """A proof from its stored form (ValueError when malformed)."""
        data = json.loads(text)
        return cls(provider=provider, form=form, proven=bool(data.get("proven")),
                   at=_moment(data.get("at")), detail=str(data.get("detail") or ""))


@attrs.frozen
class Question:
    """A probe to make: ask ``provider``'s lookup about ``witness`` (its batch, with
    ``message`` as it was before its answer) and see whether ``form`` finds it."""

    provider: str
    form: str
    witness: Witness
    message: Message

    @property
    def batch_id(self) -> str:
        """The batch to ask about."""
        return self.witness.batch_id


class Lookups:
    """The witnesses and proofs of one kit's providers (see the module docs); ``store``
    gives the store to keep them in (called when needed, so building this touches nothing).
    Thread-safe."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._memory: Dict[str, str] = {}
        self._written: Dict[str, dt.datetime] = {}
        self._next_ask: Dict[str, Tuple[str, dt.datetime]] = {}

    # -- held batches (per process) ---------------------------------------------------------
    def may_ask(self, batch_id: str, now: dt.datetime) -> bool:
        """Whether a held batch may be asked about again: :data:`HOLD_RETRY` after the last
        time it was held here, at once when this process has kept a new witness since (it
        may prove the lookup), after a restart or a clock jump back."""
        found = self._next_ask.get(batch_id)
        return found is None or now >= found[1] or found[1] - now > HOLD_RETRY

    def held(self, provider: str, batch_id: str, now: dt.datetime) -> None:
        """``batch_id`` of ``provider`` was held at ``now``."""
        with self._lock:
            if len(self._next_ask) >= 10_000:  # bounded: the oldest is forgotten (asked again)
                self._next_ask.pop(next(iter(self._next_ask)))
            self._next_ask[batch_id] = (provider, now + HOLD_RETRY)

    def settled(self, batch_id: str) -> None:
        """``batch_id`` is no longer held."""
        with self._lock:
            self._next_ask.pop(batch_id, None)

    # -- key/value state --------------------------------------------------------------------
    def _get(self, key: str) -> Optional[str]:
        store = self._store()
        if isinstance(store, OutreachStore):
            return store.get_state(key)
        with self._lock:
            return self._memory.get(key)

    def _set(self, key: str, value: str) -> None:
        store = self._store()
        if isinstance(store, OutreachStore):
            store.set_state(key, value)
            return
        with self._lock:
            self._memory[key] = value

    # -- witnesses --------------------------------------------------------------------------
    def saw_accepted(self, provider: str, batch_id: str, results: Sequence[SendResult],
                     now: dt.datetime) -> None:
        """An ordinary send of ``batch_id`` returned ``results``: keep one accepted message
        as the witness, unless this process stored one less than :data:`WITNESS_REFRESH`
        ago."""
        last = self._written.get(provider)
        if last is not None and now - last < WITNESS_REFRESH and now >= last:
            return
        accepted = next((r for r in results if r.state is State.SENT), None)
        if accepted is None:
            return
        witness = Witness(provider=provider, batch_id=batch_id, message_id=accepted.message_id,
                          provider_message_id=accepted.provider_message_id, at=now)
        try:
            self._set(_WITNESS + provider, witness.to_json())
        except Exception:  # sending goes on; the next batch tries again
            log.exception("could not keep a reconciliation witness for %s", provider)
            return
        self._written[provider] = now
        with self._lock:  # a batch held for want of a proof may be settled now
            for batch_id in [b for b, (p, _) in self._next_ask.items() if p == provider]:
                del self._next_ask[batch_id]

    def witness(self, provider: str) -> Optional[Witness]:
        """The stored witness of ``provider``, if any."""
        text = self._get(_WITNESS + provider)
        if text is None:
            return None
        try:
            return Witness.from_json(provider, text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed reconciliation witness for %s: %s", provider, exc)
            return None

    # -- proofs -----------------------------------------------------------------------------
    def proof(self, provider: str, form: str) -> Optional[Proof]:
        """The last probe of ``provider``'s lookup ``form``, if any."""
        text = self._get(f"{_PROOF}{provider}:{form}")
        if text is None:
            return None
        try:
            return Proof.from_json(provider, form, text)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring a malformed lookup proof for %s: %s", provider, exc)
            return None

    def trusted(self, provider: str, form: str, now: dt.datetime) -> bool:
        """Whether ``form`` is proven, less than :data:`PROOF_TTL` ago."""
        proof = self.proof(provider, form)
        return proof is not None and proof.proven and proof.at <= now < proof.at + PROOF_TTL

    def _record(self, provider: str, form: str, proven: bool, detail: str,
                now: dt.datetime) -> Proof:
        proof = Proof(provider=provider, form=form, proven=proven, at=now, detail=detail)
        self._set(f"{_PROOF}{provider}:{form}", proof.to_json())
        if proven:
            log.info("%s is proven: %s", form_label(provider, form), detail)
        else:
            log.warning("%s is not proven: %s", form_label(provider, form), detail)
        return proof

    def question(self, store: Store, provider: str, form: str,
                 now: dt.datetime) -> Union[Question, Tuple[bool, str]]:
        """What to ask ``provider`` to prove ``form``: its witness, as it was while its
        answer was unknown (:class:`Question`); or, when there is nothing to ask, ``(False,
        why)`` (no witness yet, or a probe that failed less than :data:`PROBE_EVERY` ago)."""
        last = self.proof(provider, form)
        if last is not None and not last.proven and last.at <= now < last.at + PROBE_EVERY:
            return False, last.detail
        witness = self.witness(provider)
        found = store.get(witness.message_id) if witness is not None else None
        if witness is None or found is None:
            return False, ("no request the gateway is known to have accepted to test it on "
                           "yet (the next successful send gives one)")
        asked = attrs.evolve(found, state=State.OUTGOING, provider_message_id=None,
                             provider_request_id=None, batch_id=witness.batch_id)
        return Question(provider=provider, form=form, witness=witness, message=asked)

    def answer(self, question: Question, outcome: Union[ReconcileResult, BaseException],
               now: dt.datetime) -> Tuple[bool, str]:
        """Whether ``question``'s form is proven by ``outcome`` (what the provider's
        ``reconcile`` returned or raised), and why; a considered answer is recorded, a
        passing failure (a timeout, a 5xx) proves nothing either way and is not."""
        witness, form = question.witness, question.form
        label = f"batch {witness.batch_id}, accepted at {witness.at:%Y-%m-%d %H:%M} UTC"
        if isinstance(outcome, BaseException):
            detail = f"asked about a request it accepted ({label}), it failed: {outcome}"
            if not definite(outcome):
                return False, detail
            return False, self._record(question.provider, form, False, detail, now).detail
        if outcome.form != form:
            detail = (f"asked about a request it accepted ({label}), it answered with lookup "
                      f"{outcome.form!r} instead")
            return False, self._record(question.provider, form, False, detail, now).detail
        proven = outcome.known and _names(outcome.results, question.message,
                                          witness.provider_message_id)
        if proven:
            detail = f"it found a request it accepted ({label})"
        else:
            detail = f"it did not find a request it accepted ({label})"
        return proven, self._record(question.provider, form, proven, detail, now).detail

    def probe(self, store: Store, provider: Provider, form: str,
              now: dt.datetime) -> Tuple[bool, str]:
        """:meth:`question` and :meth:`answer` in one synchronous call: ask ``provider``
        about its witness the way it answered about a lost batch (with ``form``); whether
        ``form`` is proven now, and why (or why not)."""
        step = self.question(store, provider.name, form, now)
        if not isinstance(step, Question):
            return step
        outcome: Union[ReconcileResult, BaseException]
        try:
            outcome = provider.reconcile(step.batch_id, [step.message])
        except Exception as exc:  # judged by answer(): a refusal or a passing failure
            outcome = exc
        return self.answer(step, outcome, now)


def _names(results: Sequence[SendResult], message: Message,
           provider_message_id: Optional[str]) -> bool:
    """Whether ``results`` report ``message`` accepted, with its gateway id when both give one."""
    for result in results:
        if result.message_id == message.id and result.state is State.SENT:
            given = result.provider_message_id
            return not (provider_message_id and given and given != provider_message_id)
    return False
