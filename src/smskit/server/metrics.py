"""Prometheus metrics of one server app, in its own registry (never the global one).

* ``smskit_messages{provider,state}``: outbound messages by state, read from the store at
  scrape time (every state is reported, zeros included, for each provider seen);
* ``smskit_store_up``: 1 when the store answered that scrape, 0 otherwise;
* ``smskit_messages_held{provider}``: messages whose request may have reached the gateway,
  held until reconciliation or a person settles them (``smskit messages --held``; they are
  ``outgoing`` in ``smskit_messages`` too);
* ``smskit_provider_balance{provider}``: the last balance the worker's periodic check read
  (kept in the store, see :mod:`smskit.outreach.balance`),
  and ``smskit_provider_balance_low{provider}``
  (1 below ``balance_low_threshold``);
* ``smskit_blacklist_sync_pending{provider}``: blacklist changes not yet acknowledged by the
  gateway;
* ``smskit_provider_circuit_open{provider}``: 1 while the provider's circuit is open (its
  messages go to the next provider of their routes), and
  ``smskit_provider_circuit_trips{provider}``: how often it opened;
* ``smskit_messages_rerouted_total{from,to}``: messages moved from one provider to another
  (from the ``rerouted`` history events);
* ``smskit_webhook_requests_total{provider,kind,outcome}``: webhook requests by result
  (``ok``, ``unauthorized``, ``forbidden``, ``not_configured``, ``too_large``...);
* ``smskit_webhook_events_total{provider,type,result}``: what those requests changed;
* ``smskit_webhook_duration_seconds{provider,kind}``: webhook handling latency.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smskit.models import State

if TYPE_CHECKING:
    from smskit.kit import SmsKit, WebhookReport

__all__ = ["OutreachCollector", "RoutingCollector", "ServerMetrics", "StoreCollector"]

log = logging.getLogger(__name__)


def _state_label(state: object) -> str:
    return state.value if isinstance(state, State) else str(state)


class StoreCollector(Collector):
    """A custom collector: message counts by provider and state, asked of the store per scrape."""

    def __init__(self, kit: SmsKit) -> None:
        self._kit = kit

    def _families(self) -> Tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "smskit_messages", "Outbound messages by provider and state (from the store).",
            labels=["provider", "state"])
        up = GaugeMetricFamily("smskit_store_up", "1 if the store answered this scrape.")
        held = GaugeMetricFamily(
            "smskit_messages_held",
            "Messages whose request may have reached the gateway, held until settled.",
            labels=["provider"])
        return messages, up, held

    def describe(self) -> Iterable[Metric]:
        """The metric names (without touching the store)."""
        return self._families()

    def collect(self) -> Iterator[Metric]:
        """Read ``store.count_by_state()`` now; a failing store reports ``smskit_store_up 0``."""
        from smskit.outbox import held_counts

        messages, up, held = self._families()
        try:
            counts = self._kit.store.count_by_state()
            waiting = held_counts(self._kit.store)
        except Exception:  # a scrape must answer even when the store is down
            log.exception("metrics: the store did not answer count_by_state()")
            up.add_metric([], 0)
            yield up
            return
        table: Dict[Tuple[str, str], int] = {}
        for (provider, state), count in counts.items():
            key = (str(provider or ""), _state_label(state))
            table[key] = table.get(key, 0) + int(count)
        for provider in sorted({p for p, _ in table}):
            for state in State:
                table.setdefault((provider, state.value), 0)
        for (provider, label), count in sorted(table.items()):
            messages.add_metric([provider, label], count)
        for provider in sorted({p for p, _ in table} | set(waiting)):
            held.add_metric([provider], waiting.get(provider, 0))
        up.add_metric([], 1)
        yield messages
        yield held
        yield up


class OutreachCollector(Collector):
    """Balances and the blacklist sync backlog, read from the store per scrape."""

    def __init__(self, kit: SmsKit) -> None:
        self._kit = kit

    def _families(self) -> Tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        balance = GaugeMetricFamily(
            "smskit_provider_balance", "Last balance read by the worker's check.",
            labels=["provider"])
        low = GaugeMetricFamily(
            "smskit_provider_balance_low", "1 if that balance is below the threshold.",
            labels=["provider"])
        backlog = GaugeMetricFamily(
            "smskit_blacklist_sync_pending",
            "Blacklist changes not yet acknowledged by the gateway.", labels=["provider"])
        return balance, low, backlog

    def describe(self) -> Iterable[Metric]:
        """The metric names (without touching the store)."""
        return self._families()

    def collect(self) -> Iterator[Metric]:
        """Read the stored balances and the sync backlog (nothing when the store fails)."""
        from smskit.outreach.balance import read_balances
        from smskit.store.outreach import OutreachStore

        balance, low, backlog = self._families()
        store = self._kit.store
        if not isinstance(store, OutreachStore):
            return
        try:
            readings = read_balances(store)
            pending = store.blacklist_sync_backlog()
        except Exception:  # a scrape must answer even when the store is down
            log.exception("metrics: the store did not answer the balance/backlog reads")
            return
        for name, reading in sorted(readings.items()):
            balance.add_metric([name], float(reading.balance))
            low.add_metric([name], 1 if reading.low else 0)
        for name, count in sorted(pending.items()):
            backlog.add_metric([name], count)
        yield balance
        yield low
        yield backlog


class RoutingCollector(Collector):
    """Circuits and moves between providers, read from the store per scrape."""

    def __init__(self, kit: SmsKit) -> None:
        self._kit = kit

    def _families(self) -> Tuple[GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        circuit = GaugeMetricFamily(
            "smskit_provider_circuit_open",
            "1 while the provider's circuit is open (its messages fail over).",
            labels=["provider"])
        trips = GaugeMetricFamily(
            "smskit_provider_circuit_trips", "How often the provider's circuit opened.",
            labels=["provider"])
        moved = CounterMetricFamily(
            "smskit_messages_rerouted", "Messages moved from one provider to another.",
            labels=["from", "to"])
        return circuit, trips, moved

    def describe(self) -> Iterable[Metric]:
        """The metric names (without touching the store)."""
        return self._families()

    def collect(self) -> Iterator[Metric]:
        """Read the stored circuits and the move counts (nothing when the store fails)."""
        from smskit.routing.circuit import read_circuits
        from smskit.store.analytics import StatsStore

        circuit, trips, moved = self._families()
        store = self._kit.store
        try:
            circuits = read_circuits(store)
            counts = store.reroute_counts() if isinstance(store, StatsStore) else {}
        except Exception:  # a scrape must answer even when the store is down
            log.exception("metrics: the store did not answer the circuit/move reads")
            return
        now = self._kit.clock()
        for name, state in sorted(circuits.items()):
            circuit.add_metric([name], 1 if state.is_open(now) else 0)
            trips.add_metric([name], state.trips)
        for (old, new), count in sorted(counts.items()):
            moved.add_metric([old, new], count)
        yield circuit
        yield trips
        yield moved


class ServerMetrics:
    """The metrics of one app: a private :class:`CollectorRegistry` and its instruments."""

    def __init__(self, kit: SmsKit) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(kit))
        self.registry.register(OutreachCollector(kit))
        self.registry.register(RoutingCollector(kit))
        self.webhook_requests = Counter(
            "smskit_webhook_requests", "Webhook requests by provider, kind and outcome.",
            ["provider", "kind", "outcome"], registry=self.registry)
        self.webhook_events = Counter(
            "smskit_webhook_events", "Events received by webhook, by type and result.",
            ["provider", "type", "result"], registry=self.registry)
        self.webhook_latency = Histogram(
            "smskit_webhook_duration_seconds", "Time to answer a webhook request.",
            ["provider", "kind"], registry=self.registry)

        # Labelled children by label values: ``labels()`` validates and locks on every call.
        self._requests: Dict[Tuple[str, str, str], Any] = {}
        self._latency: Dict[Tuple[str, str], Any] = {}
        self._events: Dict[Tuple[str, str, str], Any] = {}

    def observe_request(self, provider: str, kind: str, outcome: str, seconds: float) -> None:
        """Count one webhook request and its latency."""
        key = (provider, kind, outcome)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.webhook_requests.labels(*key)
        counter.inc()
        histogram = self._latency.get((provider, kind))
        if histogram is None:
            histogram = self._latency[(provider, kind)] = self.webhook_latency.labels(
                provider, kind)
        histogram.observe(seconds)

    def _count_event(self, provider: str, type_: str, result: str) -> None:
        key = (provider, type_, result)
        counter = self._events.get(key)
        if counter is None:
            counter = self._events[key] = self.webhook_events.labels(*key)
        counter.inc()

    def observe_report(self, provider: str, report: WebhookReport) -> None:
        """Count the status events and replies a webhook carried, by what they did."""
        for status in report.statuses:
            if status.message is None:
                result = "unknown"
            else:
                result = "applied" if status.applied else "ignored"
            self._count_event(provider, "status", result)
        for inbound in report.inbound:
            result = "new" if inbound.created else "duplicate"
            self._count_event(provider, "reply", result)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (asks the store; call off the loop)."""
        return generate_latest(self.registry)
