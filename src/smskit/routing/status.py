"""One line per provider for the dashboard, ``/api/stats`` and the metrics: its circuit, its
queue, the messages held while their outcome is unknown, its last balance, its rate limit and
the messages moved to and from it.

Everything is read from the store (the circuits and balances the worker keeps in its key/value
state, the queue by an aggregate count, the moves from the ``rerouted`` events), so a server
shows what the workers do.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import attrs

from smskit.models import State
from smskit.routing.circuit import parse_circuits
from smskit.store.analytics import StatsStore, cost_text

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = ["ProviderLine", "provider_lines"]


@attrs.frozen(kw_only=True)
class ProviderLine:
    """What one provider is doing. ``circuit`` is ``closed``, ``open`` or ``half-open``;
    ``moved_in``/``moved_out`` count the messages moved to/from it in the range asked."""

    provider: str
    circuit: str = "closed"
    open_until: Optional[dt.datetime] = None
    reason: Optional[str] = None
    trips: int = 0
    queued: int = 0
    #: Messages whose request may have reached the gateway, waiting for reconciliation or a
    #: person (``smskit messages --held``); counted in ``queued`` too (they are ``outgoing``).
    held: int = 0
    balance: Optional[Decimal] = None
    balance_low: bool = False
    max_per_second: Optional[float] = None
    moved_in: int = 0
    moved_out: int = 0

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form (``/api/stats``' ``provider_status``)."""
        return {
            "provider": self.provider, "circuit": self.circuit,
            "open_until": self.open_until.isoformat() if self.open_until else None,
            "reason": self.reason, "trips": self.trips, "queued": self.queued,
            "held": self.held,
            "balance": cost_text(self.balance) if self.balance is not None else None,
            "balance_low": self.balance_low, "max_per_second": self.max_per_second,
            "moved_in": self.moved_in, "moved_out": self.moved_out,
        }


def provider_lines(kit: SmsKit, now: dt.datetime, start: Optional[dt.datetime] = None,
                   end: Optional[dt.datetime] = None) -> List[ProviderLine]:
    """A line for each provider the kit routes to or the store has seen, sorted by name;
    moves counted in ``[start, end)`` (open sides: all time)."""
    from smskit.outbox import held_counts
    from smskit.outreach.balance import parse_balances
    from smskit.store.outreach import OutreachStore

    store = kit.store
    queued: Dict[str, int] = {}
    for (provider, state), count in store.count_by_state().items():
        if state is State.OUTGOING and provider:
            queued[provider] = queued.get(provider, 0) + int(count)
    # One read of the key/value state for both the circuits and the balances.
    kv = store.list_state("") if isinstance(store, OutreachStore) else {}
    circuits = parse_circuits(kv)
    balances = parse_balances(kv)
    held = held_counts(store)
    moves: Dict[Tuple[str, str], int] = (
        store.reroute_counts(start, end) if isinstance(store, StatsStore) else {})
    names = set(kit.routed_providers()) | set(queued) | set(circuits) | set(balances)
    names |= {name for pair in moves for name in pair if name}
    lines = []
    for name in sorted(names):
        circuit = circuits.get(name)
        reading = balances.get(name)
        lines.append(ProviderLine(
            provider=name,
            circuit=circuit.status(now) if circuit is not None else "closed",
            open_until=circuit.until if circuit is not None else None,
            reason=circuit.reason if circuit is not None and circuit.until else None,
            trips=circuit.trips if circuit is not None else 0,
            queued=queued.get(name, 0),
            held=held.get(name, 0),
            balance=reading.balance if reading is not None else None,
            balance_low=reading.low if reading is not None else False,
            max_per_second=kit.policies.max_per_second(name),
            moved_in=sum(n for (_, to), n in moves.items() if to == name),
            moved_out=sum(n for (frm, _), n in moves.items() if frm == name),
        ))
    return lines
