"""Prometheus metrics of one server app, in its own registry (never the global one).

* ``smskit_messages{provider,state}``: outbound messages by state, read from the store
  (every state is reported, zeros included, for each provider seen);
* ``smskit_store_up``: 1 when the store answered that read, 0 otherwise;
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
* ``smskit_webhook_duration_seconds{provider,kind}``: webhook handling latency;
* ``smskit_metrics_store_age_seconds``: how old the store figures above are.

Under ``smskit serve --workers N`` each worker process counts its own requests, so the
counters and the histogram are kept in Prometheus's multi-process files
(``PROMETHEUS_MULTIPROC_DIR``, which the command sets to a directory of its own) and a scrape,
whichever worker answers it, adds up every worker's, including those of a worker that died
and was restarted (a counter never goes back).

The figures read from the store (message counts by state, balances, the sync backlog) cost a
scan of the messages table, so they are read at most once per ``metrics_cache_seconds``
(default 5 s; :class:`StoreSnapshot`) whatever the number of scrapers, and concurrent scrapes
share one read. The counters and the histogram are kept in memory as requests happen, and the
whole text is rendered at most once per :data:`RENDER_EVERY` (scrapes in between get the same
text). Scrapes are also answered at most ``metrics_max_per_second`` times a second (default
10, ``0``: no limit); one beyond that waits for its turn, which costs nothing while it waits.
A Prometheus server scrapes every 15 s or so; clients scraping in a loop would otherwise take
CPU from the webhooks even with nothing to compute (benchmarks/README.md has the figures).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smskit.models import State

if TYPE_CHECKING:
    from smskit.kit import SmsKit, WebhookReport

__all__ = [
    "DEFAULT_CACHE_SECONDS",
    "DEFAULT_MAX_PER_SECOND",
    "MULTIPROCESS_DIR",
    "RENDER_EVERY",
    "OutreachCollector",
    "RoutingCollector",
    "ServerMetrics",
    "StoreCollector",
    "StoreFigures",
    "StoreSnapshot",
    "shared_between_processes",
]

log = logging.getLogger(__name__)

#: Default seconds the store figures are kept before the next scrape reads them again.
DEFAULT_CACHE_SECONDS = 5.0
#: Seconds a rendered exposition is served again to the scrapes that follow it.
RENDER_EVERY = 1.0
#: Default most scrapes answered per second (the others wait their turn).
DEFAULT_MAX_PER_SECOND = 10.0


@attrs.frozen
class StoreFigures:
    """What the store said at one moment: message counts (``None``: it did not answer),
    balances and the blacklist sync backlog (``None``: not an outreach store, or no answer)."""

    counts: Optional[Dict[Tuple[str, State], int]]
    balances: Optional[Dict[str, Tuple[Decimal, bool]]] = None
    backlog: Optional[Dict[str, int]] = None
    #: Circuits by provider and moves between providers (``None``: no answer).
    circuits: Optional[Dict[str, Any]] = None
    reroutes: Optional[Dict[Tuple[str, str], int]] = None
    #: Messages held in batches whose outcome is unknown, by provider.
    held: Optional[Dict[str, int]] = None
    read_at: float = 0.0


class StoreSnapshot:
    """The store figures, read at most once per ``ttl`` seconds (see the module).

    :meth:`current` reads them in the calling thread when they are stale (one reader at a time;
    the others wait and share its result); :meth:`refresh` does it from the event loop, in the
    thread pool, with concurrent scrapes awaiting the same read.
    """

    def __init__(self, kit: SmsKit, ttl: float = DEFAULT_CACHE_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kit = kit
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._figures: Optional[StoreFigures] = None
        self._reading: Optional[asyncio.Future[StoreFigures]] = None
        #: How many times the store was read (tests and benchmarks check it stays low).
        self.reads = 0

    def _fresh(self) -> Optional[StoreFigures]:
        figures = self._figures
        if figures is not None and self._clock() - figures.read_at < self.ttl:
            return figures
        return None

    def current(self) -> StoreFigures:
        """Fresh figures, reading the store if they are older than ``ttl`` (blocking)."""
        figures = self._fresh()
        if figures is not None:
            return figures
        with self._lock:
            figures = self._fresh()  # another thread may have read them meanwhile
            if figures is None:
                figures = self._figures = self._read()
            return figures

    async def refresh(self) -> StoreFigures:
        """:meth:`current` without blocking the event loop; concurrent callers share one
        read."""
        figures = self._fresh()
        if figures is not None:
            return figures
        from starlette.concurrency import run_in_threadpool

        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(run_in_threadpool(self.current))
        return await asyncio.shield(self._reading)

    def _read(self) -> StoreFigures:
        from smskit.outreach.balance import read_balances
        from smskit.store.outreach import OutreachStore

        self.reads += 1
        store = self._kit.store
        try:
            counts: Optional[Dict[Tuple[str, State], int]] = dict(store.count_by_state())
        except Exception:  # a scrape must answer even when the store is down
            log.exception("metrics: the store did not answer count_by_state()")
            counts = None
        balances: Optional[Dict[str, Tuple[Decimal, bool]]] = None
        backlog: Optional[Dict[str, int]] = None
        if counts is not None and isinstance(store, OutreachStore):
            try:
                balances = {name: (reading.balance, reading.low)
                            for name, reading in read_balances(store).items()}
                backlog = dict(store.blacklist_sync_backlog())
            except Exception:  # a scrape must answer even when the store is down
                log.exception("metrics: the store did not answer the balance/backlog reads")
                balances = backlog = None
        circuits, reroutes = self._read_routing(store) if counts is not None else (None, None)
        held: Optional[Dict[str, int]] = None
        if counts is not None:
            from smskit.outbox import held_counts

            try:
                held = held_counts(store)
            except Exception:  # a scrape must answer even when the store is down
                log.exception("metrics: the store did not answer the held-batches read")
        return StoreFigures(counts=counts, balances=balances, backlog=backlog,
                            circuits=circuits, reroutes=reroutes, held=held,
                            read_at=self._clock())

    @staticmethod
    def _read_routing(store: Any) -> Tuple[Optional[Dict[str, Any]],
                                           Optional[Dict[Tuple[str, str], int]]]:
        from smskit.routing.circuit import read_circuits
        from smskit.store.analytics import StatsStore

        try:
            circuits: Dict[str, Any] = dict(read_circuits(store))
            reroutes = dict(store.reroute_counts()) if isinstance(store, StatsStore) else {}
        except Exception:  # a scrape must answer even when the store is down
            log.exception("metrics: the store did not answer the circuit/move reads")
            return None, None
        return circuits, reroutes


def _state_label(state: object) -> str:
    return state.value if isinstance(state, State) else str(state)


class StoreCollector(Collector):
    """Message counts by provider and state, from the snapshot (read from the store at most
    once per ``ttl``)."""

    def __init__(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot

    def _families(self) -> Tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                                 GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "smskit_messages", "Outbound messages by provider and state (from the store).",
            labels=["provider", "state"])
        up = GaugeMetricFamily("smskit_store_up", "1 if the store answered its last read.")
        age = GaugeMetricFamily("smskit_metrics_store_age_seconds",
                                "Seconds since the store figures were read.")
        held = GaugeMetricFamily(
            "smskit_messages_held",
            "Messages whose request may have reached the gateway, held until settled.",
            labels=["provider"])
        return messages, up, age, held

    def describe(self) -> Iterable[Metric]:
        """The metric names (without touching the store)."""
        return self._families()

    def collect(self) -> Iterator[Metric]:
        """The snapshot's counts; a failing store reports ``smskit_store_up 0``."""
        messages, up, age, held = self._families()
        figures = self._snapshot.current()
        age.add_metric([], max(0.0, time.monotonic() - figures.read_at))
        if figures.counts is None:
            up.add_metric([], 0)
            yield up
            yield age
            return
        table: Dict[Tuple[str, str], int] = {}
        for (provider, state), count in figures.counts.items():
            key = (str(provider or ""), _state_label(state))
            table[key] = table.get(key, 0) + int(count)
        for provider in sorted({p for p, _ in table}):
            for state in State:
                table.setdefault((provider, state.value), 0)
        for (provider, label), count in sorted(table.items()):
            messages.add_metric([provider, label], count)
        waiting = figures.held or {}
        for provider in sorted({p for p, _ in table} | set(waiting)):
            held.add_metric([provider], waiting.get(provider, 0))
        up.add_metric([], 1)
        yield messages
        if figures.held is not None:
            yield held
        yield up
        yield age


class OutreachCollector(Collector):
    """Balances and the blacklist sync backlog, from the snapshot."""

    def __init__(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot

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
        """The stored balances and the sync backlog (nothing when the store did not answer)."""
        figures = self._snapshot.current()
        if figures.balances is None or figures.backlog is None:
            return
        balance, low, backlog = self._families()
        for name, (amount, is_low) in sorted(figures.balances.items()):
            balance.add_metric([name], float(amount))
            low.add_metric([name], 1 if is_low else 0)
        for name, count in sorted(figures.backlog.items()):
            backlog.add_metric([name], count)
        yield balance
        yield low
        yield backlog


class RoutingCollector(Collector):
    """Circuits and moves between providers, from the snapshot."""

    def __init__(self, snapshot: StoreSnapshot, clock: Callable[[], Any]) -> None:
        self._snapshot = snapshot
        self._clock = clock

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
        """The stored circuits and the move counts (nothing when the store did not answer)."""
        figures = self._snapshot.current()
        if figures.circuits is None or figures.reroutes is None:
            return
        circuit, trips, moved = self._families()
        now = self._clock()
        for name, state in sorted(figures.circuits.items()):
            circuit.add_metric([name], 1 if state.is_open(now) else 0)
            trips.add_metric([name], state.trips)
        for (old, new), count in sorted(figures.reroutes.items()):
            moved.add_metric([old, new], count)
        yield circuit
        yield trips
        yield moved


#: Where the worker processes of one server keep their counters (Prometheus's own variable).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def shared_between_processes() -> bool:
    """Whether this process keeps its counters in :data:`MULTIPROCESS_DIR` (decided by
    prometheus_client when it was imported, from the variable as it was then)."""
    return bool(os.environ.get(MULTIPROCESS_DIR)) and values.ValueClass is not values.MutexValue


class ServerMetrics:
    """The metrics of one app: a private :class:`CollectorRegistry` and its instruments."""

    def __init__(self, kit: SmsKit, *, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 max_per_second: float = DEFAULT_MAX_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        #: Most scrapes answered per second (``0``: no limit).
        self.max_per_second = max_per_second
        self._next_turn = 0.0
        #: The store figures, read at most once per ``cache_seconds``.
        self.snapshot = StoreSnapshot(kit, cache_seconds, clock=clock)
        self._clock = clock
        self._rendered: Optional[Tuple[float, bytes]] = None
        store_collectors = (StoreCollector(self.snapshot), OutreachCollector(self.snapshot),
                            RoutingCollector(self.snapshot, kit.clock))
        for collector in store_collectors:
            self.registry.register(collector)
        #: What a scrape shows: this registry, or with several workers every worker's counters
        #: (read from their files) next to the store figures.
        self.exposed = self.registry
        if shared_between_processes():
            from prometheus_client.multiprocess import MultiProcessCollector

            self.exposed = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.exposed, path=os.environ[MULTIPROCESS_DIR])
            for collector in store_collectors:
                self.exposed.register(collector)
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
        """The Prometheus text exposition of :attr:`exposed` now (reads the store if its
        figures are stale: call it off the event loop, or after :meth:`scrape`'s refresh)."""
        return generate_latest(self.exposed)

    async def _wait_turn(self) -> None:
        """Wait until this scrape may be answered (at most ``max_per_second`` a second)."""
        if self.max_per_second <= 0:
            return
        now = self._clock()
        turn = max(now, self._next_turn)
        self._next_turn = turn + 1.0 / self.max_per_second
        if turn > now:
            await asyncio.sleep(turn - now)

    async def scrape(self) -> bytes:
        """What ``GET /metrics`` answers, once its turn comes: the store figures refreshed
        without blocking the loop when stale, and the text rendered at most once per
        :data:`RENDER_EVERY`."""
        await self._wait_turn()
        now = self._clock()
        rendered = self._rendered
        if rendered is not None and now - rendered[0] < RENDER_EVERY:
            return rendered[1]
        await self.snapshot.refresh()
        body = self.render()
        self._rendered = (self._clock(), body)
        return body
