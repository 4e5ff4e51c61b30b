"""The send pipeline, and why it cannot send twice.

Every function here receives what it works with (the store, the provider, the plugin hooks,
the clock); :class:`smskit.SmsKit` is the facade that hands them its own.

1. normalise the phone;
2. ask the plugins for extra variables (``prepare_message``) and render the template (a missing
   variable names the variable and the recipient); with link tracking, replace URLs by short
   links;
3. count encoding, segments and cost. Bad input (an invalid phone, a missing variable, an empty
   body, one over the segment cap) raises for a single send; in a bulk send it becomes a
   ``rejected`` record with the reason and the batch goes on;
4. policy: blacklisted -> ``canceled``; a ``check_message`` veto -> ``canceled``; inside quiet
   hours or the recipient's do-not-disturb rule -> deferred (``scheduled_at`` moved to the next
   allowed moment, never dropped);
5. **persist as ``outgoing`` before any network call** (:meth:`Store.add_messages`, short links
   first); an idempotency key already used returns the stored message instead;
6. :func:`dispatch`: claim due messages in provider-sized batches, check the blacklist once
   more, send, record each result forward only;
7. a failure where the request may have arrived (timeout, reset, 5xx) marks the batch
   ``ambiguous``; :func:`reconcile` asks the gateway about it by our batch reference and only a
   request the gateway never saw is sent again, and only when that lookup is proven (it found
   a request smskit knows the gateway accepted, :mod:`smskit.outbox.proof`); otherwise the
   batch is held for a person (:func:`held`, :func:`resolve`). A worker restarted after a
   crash reconciles stale ``claimed`` batches the same way before it sends anything new.

Where each step lives: :mod:`smskit.outbox.compose` (1 to 4, without any I/O: the store's
answers for a chunk of recipients are looked up beforehand), :mod:`smskit.outbox.links`
(short links), :mod:`smskit.outbox.sending` (a send from end to end: the look-ups, 5, the
outcomes, 6 after each chunk), :mod:`smskit.outbox.dispatching` (6),
:mod:`smskit.outbox.reconciling` (7) and :mod:`smskit.outbox.proof` (its proofs).
"""

from __future__ import annotations

from smskit.outbox.compose import BulkSummary, Composer, Outcome
from smskit.outbox.dispatching import Dispatched, DispatchReport, begin_dispatch, dispatch
from smskit.outbox.proof import Lookups
from smskit.outbox.reconciling import (
    HeldBatch,
    ReconcileReport,
    held,
    held_counts,
    reconcile,
    resolve,
)

__all__ = [
    "BulkSummary",
    "Composer",
    "DispatchReport",
    "Dispatched",
    "HeldBatch",
    "Lookups",
    "Outcome",
    "ReconcileReport",
    "begin_dispatch",
    "dispatch",
    "held",
    "held_counts",
    "reconcile",
    "resolve",
]
