"""The provider and store contracts: every method the core calls is declared, with its default.

* A provider subclasses :class:`smskit.provider.Provider`; an optional operation it does not
  implement raises :class:`NotSupportedError` naming it, and its capability flag stays off.
* A flag claimed without its methods, a factory returning something else, or a provider that
  names itself otherwise than it is registered, is refused when the provider is built.
* A store that subclasses :class:`smskit.store.base.Store` inherits ``claim_batch_messages``,
  ``apply_statuses`` and ``ping``; a store lacking a method is refused when built.
* ``SmsKit().hooks`` imports neither SQLAlchemy nor the Odoo store without an Odoo configured.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import attrs
import pytest

import smskit
from odoo_fake import fake_odoo, odoo_server, odoo_store  # noqa: F401 - fixtures
from smskit import outbox
from smskit.config import Settings
from smskit.errors import (
    ConfigurationError,
    NotSupportedError,
    PluginError,
    ProviderError,
    SmsKitError,
)
from smskit.kit import SmsKit
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.plugins import Plugins, store_scheme
from smskit.provider import CAPABILITY_METHODS, Capabilities, Provider, contract_problems
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.store.outreach import OutreachStore
from smskit.webhooks.request import WebhookRequest
from smskit_kolmeya.client import KolmeyaClient
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_odoo.store import OdooStore
from smskit_odoo.testing import FakeOdoo

NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.timezone.utc)
PHONE = "+5511987654321"


class SendOnly(Provider):
    """The least a provider is: a name, a batch size and send_batch."""

    name = "sendonly"
    max_batch = 10

    def __init__(self) -> None:
        self.batches: List[str] = []

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        self.batches.append(batch_id)
        return [SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"p-{m.id}")
                for m in messages]


def plugins_with(**factories: Callable[[Settings], Any]) -> Plugins:
    """A plugin manager (no entry points) with these provider factories registered."""

    class Registering:
        @smskit.hookimpl
        def register_providers(self, register: Callable[[str, Any], None]) -> None:
            for name, factory in factories.items():
                register(name, factory)

    plugins = Plugins(Settings.load(environ={}), entry_points=False)
    plugins.register(Registering(), name="test-providers")
    return plugins


# -- the provider base class --------------------------------------------------------------------
OPTIONAL_CALLS: Dict[str, Callable[[Provider], object]] = {
    "reconcile": lambda p: p.reconcile("b1", []),
    "message_status": lambda p: p.message_status("p-1"),
    "poll_statuses": lambda p: p.poll_statuses([]),
    "parse_webhook": lambda p: p.parse_webhook(
        WebhookRequest(provider="p", kind="status", body=b"{}")),
    "balance": lambda p: p.balance(),
    "blacklist_add": lambda p: p.blacklist_add([PHONE]),
    "blacklist_remove": lambda p: p.blacklist_remove([PHONE]),
    "poll_replies": lambda p: p.poll_replies(),
    "pause_job": lambda p: p.pause_job(1),
    "play_job": lambda p: p.play_job(1),
}


@pytest.mark.parametrize("operation", sorted(OPTIONAL_CALLS))
def test_an_operation_a_provider_lacks_raises_not_supported_naming_both(operation: str) -> None:
    provider = SendOnly()
    with pytest.raises(NotSupportedError) as caught:
        OPTIONAL_CALLS[operation](provider)
    error = caught.value
    assert (error.provider, error.operation) == ("sendonly", operation)
    assert str(error) == f"provider 'sendonly' does not support {operation}"
    # handled wherever a gateway failure is, and nothing was sent
    assert isinstance(error, ProviderError) and isinstance(error, SmsKitError)
    assert error.sent_nothing is True


def test_every_capability_flag_names_methods_the_base_class_declares() -> None:
    flags = {f.name for f in attrs.fields(Capabilities)}
    assert set(CAPABILITY_METHODS) == flags
    declared = {m for methods in CAPABILITY_METHODS.values() for m in methods}
    assert declared == set(OPTIONAL_CALLS)
    assert all(callable(vars(Provider)[m]) for m in declared)


def test_a_provider_without_send_batch_cannot_be_made() -> None:
    class Nothing(Provider):
        name = "nothing"
        max_batch = 1

    with pytest.raises(TypeError, match="send_batch"):
        Nothing()  # type: ignore[abstract]


def test_send_only_provider_keeps_the_contract_and_closes_quietly() -> None:
    provider = SendOnly()
    assert contract_problems(provider) == []
    assert provider.capabilities == Capabilities()
    assert provider.close() is None


def test_the_shipped_providers_claim_only_what_they_implement() -> None:
    kolmeya = KolmeyaProvider(KolmeyaClient(token="t", base_url="http://127.0.0.1:9/api/v1"))
    try:
        assert contract_problems(kolmeya) == []
        assert kolmeya.capabilities.job_control and kolmeya.capabilities.status_query
    finally:
        kolmeya.close()
    loopback = LoopbackProvider()
    assert contract_problems(loopback) == []
    assert not loopback.capabilities.job_control  # it has no jobs: pausing says so
    with pytest.raises(NotSupportedError, match="'loopback' does not support pause_job"):
        loopback.pause_job(1)


def test_a_flag_without_its_methods_breaks_the_contract() -> None:
    class Boasting(SendOnly):
        capabilities = Capabilities(reconcile=True, blacklist=True, balance=False)

    assert contract_problems(Boasting()) == [
        "capabilities.reconcile is set but the provider does not implement reconcile",
        "capabilities.blacklist is set but the provider does not implement blacklist_add "
        "and blacklist_remove",
    ]


def test_contract_problems_name_bad_declarations() -> None:
    class Unnamed(SendOnly):
        name = ""
        max_batch = 0

    class Unset(Provider):
        def send_batch(self, messages: Sequence[Message], *,
                       batch_id: str) -> List[SendResult]:
            return []

    class WrongCapabilities(SendOnly):
        capabilities = {"reconcile": True}  # type: ignore[assignment]

    assert contract_problems(object()) == [
        "object is not a subclass of smskit.provider.Provider"]
    assert contract_problems(Unnamed()) == ["name must be a non-empty string, not ''",
                                            "max_batch must be a positive integer, not 0"]
    (unset,) = contract_problems(Unset())
    assert unset.startswith("name and max_batch must be set")
    assert contract_problems(WrongCapabilities()) == [
        "capabilities must be a smskit.provider.Capabilities"]


# -- building providers --------------------------------------------------------------------------
def test_a_provider_registered_under_another_name_is_refused_when_built() -> None:
    plugins = plugins_with(alias=lambda settings: LoopbackProvider())
    with pytest.raises(ConfigurationError) as caught:
        plugins.create_provider("alias")
    assert "registered as 'alias' names itself 'loopback'" in str(caught.value)
    # through the kit: nothing is dispatched under a name nobody claims
    kit = SmsKit(Settings.load(environ={}, provider="alias"), store=MemoryStore(),
                 plugins=plugins)
    with pytest.raises(ConfigurationError, match="'alias'.*'loopback'"):
        kit.send_many([PHONE], "Oi")
    assert kit.store.list_messages() == []


def test_a_provider_under_its_own_name_is_built_once_by_the_kit() -> None:
    plugins = plugins_with(sendonly=lambda settings: SendOnly())
    kit = SmsKit(Settings.load(environ={}, provider="sendonly"), store=MemoryStore(),
                 plugins=plugins)
    outcome = kit.send(PHONE, "Oi")
    assert outcome.state is State.SENT
    assert kit.provider() is kit.provider("sendonly")


def test_a_factory_that_breaks_the_contract_is_a_plugin_error() -> None:
    class NotAProvider:
        name = "duck"
        max_batch = 1
        capabilities = Capabilities()

        def send_batch(self, messages: Sequence[Message], *,
                       batch_id: str) -> List[SendResult]:
            return []

    class Boasting(SendOnly):
        capabilities = Capabilities(balance=True)

    plugins = plugins_with(duck=lambda s: NotAProvider(), sendonly=lambda s: Boasting())
    with pytest.raises(PluginError, match="registered as 'duck'.*not a subclass"):
        plugins.create_provider("duck")
    with pytest.raises(PluginError, match="capabilities.balance is set"):
        plugins.create_provider("sendonly")


def test_an_ambiguous_batch_of_a_provider_that_cannot_reconcile_waits() -> None:
    store = MemoryStore()
    (added,) = store.add_messages([Message.new(PHONE, "Oi", provider="sendonly",
                                               state=State.OUTGOING,
                                               created_at=NOW - dt.timedelta(hours=1))])
    batch = store.claim_batch("sendonly", 10, NOW, "b1")
    assert batch is not None
    store.mark_batch_ambiguous("b1", "timeout")
    report = outbox.reconcile(store, SendOnly(), now=NOW)
    assert (report.batches, report.still_unknown, report.resendable) == (1, 1, 0)
    assert [b.id for b in store.batches(status="ambiguous")] == ["b1"]
    assert store.get(added.message.id).state is State.OUTGOING  # type: ignore[union-attr]


# -- the status refresh reads status_query ---------------------------------------------------------
def test_status_refresh_asks_a_provider_with_status_query_only() -> None:
    from smskit.cli.messaging import _refresh

    loopback = LoopbackProvider()
    kit = SmsKit(Settings.load(environ={}), store=MemoryStore(), provider=loopback)
    outcome = kit.send(PHONE, "Oi")
    message = kit.get(str(outcome.message_id))
    assert message is not None and message.state is State.SENT
    assert _refresh(kit, message) == "gateway says sent (duplicate)"

    class Mute(LoopbackProvider):  # it could answer, but does not claim to
        capabilities = attrs.evolve(LoopbackProvider.capabilities, status_query=False)

    mute = SmsKit(Settings.load(environ={}), store=MemoryStore(), provider=Mute())
    sent = mute.get(str(mute.send(PHONE, "Oi").message_id))
    assert sent is not None
    assert _refresh(mute, sent) == "provider 'loopback' cannot be asked about one message"


def test_loopback_answers_status_queries_for_its_own_messages() -> None:
    loopback = LoopbackProvider()
    (result,) = loopback.send_batch([Message.new(PHONE, "Oi", provider="loopback")],
                                    batch_id="b1")
    assert result.provider_message_id is not None
    event = loopback.message_status(result.provider_message_id)
    assert (event.state, event.message_id) == (State.SENT, result.message_id)
    with pytest.raises(ProviderError, match="knows no message"):
        loopback.message_status("never-given")


# -- the store protocol's defaults ----------------------------------------------------------------
class Counting(MemoryStore):
    """A memory store with Store's defaults for every optional method (memory keeps its own
    ``apply_statuses``: reset here), counting the required methods they call."""

    apply_statuses = Store.apply_statuses

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[str] = []

    def claim_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("claim_batch")
        return super().claim_batch(*args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("get_many")
        return super().get_many(*args, **kwargs)

    def apply_status(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("apply_status")
        return super().apply_status(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("get")
        return super().get(*args, **kwargs)

    def inner_state(self, message_id: str) -> State:
        """The stored state, read without counting."""
        (message,) = super().get_many([message_id])
        return message.state


def test_store_defaults_are_built_on_the_required_methods() -> None:
    store = Counting()
    assert type(store).claim_batch_messages is Store.claim_batch_messages
    assert type(store).ping is Store.ping
    ids = [o.message.id for o in store.add_messages(
        [Message.new(PHONE, f"Oi {i}", provider="loopback", state=State.OUTGOING,
                     created_at=NOW - dt.timedelta(minutes=10 - i)) for i in range(3)])]
    store.calls.clear()
    claimed = store.claim_batch_messages("loopback", 2, NOW, "b1")
    assert claimed is not None
    batch, messages = claimed
    assert [m.id for m in messages] == list(batch.message_ids) == ids[:2]
    assert store.calls == ["claim_batch", "get_many"]
    assert store.claim_batch_messages("loopback", 2, NOW + dt.timedelta(hours=1), "b2") \
        is not None
    assert store.claim_batch_messages("loopback", 2, NOW, "b3") is None

    store.calls.clear()
    outcomes = store.apply_statuses([
        StatusEvent(provider="loopback", state=State.DELIVERED, message_id=ids[0]),
        StatusEvent(provider="loopback", state=State.SENT, message_id=ids[0])])
    assert [o.applied for o in outcomes] == [True, False]  # the second saw the first
    assert store.inner_state(ids[0]) is State.DELIVERED
    assert store.calls == ["apply_status", "apply_status"]

    store.calls.clear()
    assert store.ping() is None
    assert store.calls == ["get"]


def test_the_shipped_stores_keep_the_whole_protocol() -> None:
    assert isinstance(MemoryStore(), Store)
    assert "__getattr__" not in dir(OdooStore)  # nothing the core calls is forwarded blindly


def test_a_store_missing_methods_is_refused_when_built() -> None:
    class Partial:
        def get(self, message_id: str) -> None:
            return None

    class Registering:
        @smskit.hookimpl
        def register_stores(self, register: Callable[[str, Any], None]) -> None:
            register("partial", lambda url, settings: Partial())

    plugins = Plugins(Settings.load(environ={}), entry_points=False)
    plugins.register(Registering(), name="partial-store")
    with pytest.raises(PluginError) as caught:
        plugins.create_store("partial://x")
    text = str(caught.value)
    assert "scheme 'partial' (" in text and "Partial) does not implement smskit.store." in text
    assert "add_messages" in text and "ping" in text and "get," not in text


def test_store_scheme() -> None:
    assert store_scheme("postgresql+psycopg://u@h/db") == "postgresql"
    assert store_scheme("odoo://admin:x@h:8069/db") == "odoo"
    assert store_scheme("sqlite:///smskit.db") == "sqlite"


# -- the Odoo store: its own methods, each reaching Odoo -------------------------------------------
def test_the_odoo_store_applies_grouped_statuses_through_its_own_apply_status(
        odoo_store: OdooStore, fake_odoo: FakeOdoo) -> None:  # noqa: F811
    assert isinstance(odoo_store, Store) and isinstance(odoo_store, OutreachStore)
    kit = SmsKit(Settings.load(environ={}), store=odoo_store, provider=LoopbackProvider())
    outcome = kit.send(PHONE, "Oi")
    (row,) = fake_odoo.records("sms.message")
    assert row["state"] == "sent"
    (applied,) = kit.apply_statuses([StatusEvent(provider="loopback", state=State.DELIVERED,
                                                 message_id=outcome.message_id)])
    assert applied.applied
    odoo_store.flush()
    (row,) = fake_odoo.records("sms.message")
    assert row["state"] == "delivered"
    odoo_store.ping()


# -- plugins reach the kit through public API ------------------------------------------------------
def test_plugins_get_and_has_store() -> None:
    kit = SmsKit(Settings.load(environ={}, database_url="memory://"))
    assert not kit.has_store
    assert kit.plugins.get("smskit.builtin") is not None
    assert kit.plugins.get("no-such-plugin") is None
    kit.hooks  # noqa: B018 - announcing the kit must not build its store
    assert not kit.has_store
    kit.store  # noqa: B018
    assert kit.has_store


_PROBE = """
import json, sys
from smskit import SmsKit
{setup}
kit.hooks
heavy = [m for m in ("sqlalchemy", "smskit_odoo.store", "alembic") if m in sys.modules]
print(json.dumps({{"heavy": heavy, "odoo_plugin": kit.plugins.get("odoo") is not None}}))
"""


@pytest.mark.parametrize("setup", [
    "kit = SmsKit()",
    "from smskit.store.memory import MemoryStore; kit = SmsKit(store=MemoryStore())",
])
def test_hooks_import_no_sqlalchemy_nor_the_odoo_store_without_odoo(
        setup: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SMSKIT_DATABASE_URL", "SMSKIT_ODOO_URL", "SMSKIT_PLUGINS",
                "SMSKIT_DISABLE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    done = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    # the Odoo plugin did load: it looked, found no Odoo, and imported nothing heavy
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"heavy": [],
                                                                "odoo_plugin": True}
