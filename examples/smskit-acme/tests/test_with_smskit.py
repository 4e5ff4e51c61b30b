"""AcmeProvider inside smskit: a kit sends through it, Acme's signed callbacks pass the webhook
gate, an ambiguous send is settled by reconciliation, and smskit finds the plugin by its entry
point."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator, List

import pytest
from fake_acme import API_KEY, FakeAcme
from smskit_acme.provider import AcmeProvider

from smskit import SmsKit, State
from smskit.webhooks import WebhookRequest, receive
from smskit.webhooks.request import parse_query

WEBHOOK_SECRET = "smskit-webhook-secret"  # noqa: S105 - a test value
STATUS_URL = f"https://sms.example.com/webhooks/acme/status?token={WEBHOOK_SECRET}"


@pytest.fixture
def kit(acme_provider: AcmeProvider) -> Iterator[SmsKit]:
    """A kit on the memory store that sends through the fake Acme."""
    with SmsKit(database_url="memory://", provider=acme_provider,
                webhook_secret=WEBHOOK_SECRET) as made:
        yield made


def test_a_kit_sends_through_acme(kit: SmsKit, acme: FakeAcme) -> None:
    outcome = kit.send("(11) 98765-4321", "Olá {{ nome }}!", variables={"nome": "Ana"})
    message = kit.get(outcome.message_id or "")
    assert message is not None and message.state is State.SENT
    assert message.provider == "acme" and message.provider_message_id in acme.messages
    assert acme.sent_texts() == ["Olá Ana!"]


def test_a_refused_number_is_rejected_with_acmes_reason(kit: SmsKit, acme: FakeAcme) -> None:
    acme.refused.add("+5511987654321")
    outcome = kit.send("(11) 98765-4321", "Oi")
    assert (outcome.state, outcome.reason) == (State.REJECTED, "blocked number")


def test_a_signed_delivery_report_reaches_the_message(kit: SmsKit, acme: FakeAcme) -> None:
    outcome = kit.send("(11) 98765-4321", "Oi")
    message = kit.get(outcome.message_id or "")
    assert message is not None and message.provider_message_id is not None
    headers, body = acme.status_callback(STATUS_URL, message.provider_message_id)

    def post(body: bytes) -> int:
        request = WebhookRequest(provider="acme", kind="status", headers=headers, body=body,
                                 query=parse_query(STATUS_URL.split("?", 1)[1]),
                                 url=STATUS_URL, client_host="203.0.113.7")
        return receive(kit, request).status  # the gate, then the kit applies the events

    assert post(body.replace(b"delivered", b"failed")) == 403  # not what Acme signed
    assert kit.get(message.id).state is State.SENT  # type: ignore[union-attr]
    assert post(body) == 200
    assert kit.get(message.id).state is State.DELIVERED  # type: ignore[union-attr]


def test_an_ambiguous_send_is_settled_by_reconciliation(kit: SmsKit, acme: FakeAcme) -> None:
    with acme.hanging_after_accept():
        outcome = kit.send("(11) 98765-4321", "Oi")  # Acme took it; the answer came too late
    assert outcome.state is State.OUTGOING  # not sent again, not lost: ambiguous
    report = kit.reconcile()
    assert (report.batches, report.confirmed, report.resendable) == (1, 1, 0)
    assert kit.get(outcome.message_id or "").state is State.SENT  # type: ignore[union-attr]
    assert acme.sends == 1


def _smskit_entry_points() -> List[str]:
    from importlib.metadata import entry_points

    found: Any = entry_points()  # a mapping of groups on Python 3.8 and 3.9
    group = found.select(group="smskit") if hasattr(found, "select") else found.get("smskit", [])
    return [f"{ep.name} = {ep.value}" for ep in group]


needs_install = pytest.mark.skipif(
    "acme = smskit_acme.plugin" not in _smskit_entry_points(),
    reason="smskit-acme is not installed: pip install ./examples/smskit-acme")


@needs_install
def test_smskit_builds_acme_from_settings(acme: FakeAcme) -> None:
    with SmsKit(database_url="memory://", provider="acme", acme_api_key=API_KEY,
                acme_base_url=acme.url) as kit:
        assert isinstance(kit.provider(), AcmeProvider)
        assert kit.send("(11) 98765-4321", "Oi").state is State.SENT


@needs_install
def test_smskit_plugins_lists_acme() -> None:
    done = subprocess.run([sys.executable, "-m", "smskit", "plugins", "--json"],
                          capture_output=True, text=True, check=True, timeout=60)
    listing = json.loads(done.stdout)
    assert "acme" in listing["providers"]
    (acme,) = [p for p in listing["plugins"] if p["name"] == "acme"]
    assert (acme["status"], acme["distribution"]) == ("loaded", "smskit-acme")
