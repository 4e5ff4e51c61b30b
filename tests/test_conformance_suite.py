"""The provider conformance suite itself: it fails a provider that breaks the error contract,
that cannot settle an ambiguous send without saying so, or whose test class leaves a simulation
out without saying why, and it lists every skipped check with its reason at the end of the run.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Mapping, Sequence, Tuple

import pytest

from smskit.errors import AmbiguousSendError, TransientProviderError, ValidationError
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.provider import Provider, WebhookPayload
from smskit.providers.loopback import LoopbackProvider
from smskit.testing.conformance import ProviderConformance
from smskit.webhooks.auth import AuthResult
from smskit.webhooks.request import WebhookRequest


class FromTheDocs(Provider):
    """What a provider written from a first reading looks like: it sends, and claims nothing."""

    name = "docs"
    max_batch = 10

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        return [SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"p-{m.id}")
                for m in messages]


class Liar(LoopbackProvider):
    """Broken: a timeout after the gateway accepted is reported as "nothing was sent"."""

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        try:
            return super().send_batch(messages, batch_id=batch_id)
        except AmbiguousSendError as exc:
            raise TransientProviderError(f"timeout: {exc}") from exc


class Loopback(ProviderConformance):
    """The simulations, on a loopback provider of any class."""

    @contextlib.contextmanager
    def gateway_unreachable(self, provider: LoopbackProvider) -> Iterator[None]:
        provider.fail_next(TransientProviderError("connection refused"))
        yield

    @contextlib.contextmanager
    def timeout_after_accept(self, provider: LoopbackProvider) -> Iterator[None]:
        provider.fail_next(AmbiguousSendError("read timeout"), after_accept=True)
        yield

    def status_callback(self, provider: Provider, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        body = json.dumps({"message_id": message.id, "state": "delivered"}).encode()
        return {"content-type": "application/json"}, body


def test_a_provider_claiming_nothing_fails_with_what_to_do() -> None:
    suite, provider = ProviderConformance(), FromTheDocs()
    suite.test_declares_identity(provider)
    suite.test_one_result_per_message(provider)
    with pytest.raises(AssertionError, match=r"does not implement gateway_unreachable\(provider\)"
                       r".*sent_nothing=True.*cannot_simulate = \{'gateway_unreachable'"):
        suite.test_unreachable_gateway_sent_nothing(provider)
    with pytest.raises(AssertionError, match="does not implement timeout_after_accept"):
        suite.test_timeout_after_accept_is_ambiguous(provider)
    with pytest.raises(AssertionError, match="no way to confirm an ambiguous send.*"
                       "ambiguous_sends_need_a_person = True"):
        suite.test_ambiguous_sends_can_be_settled(provider)
    with pytest.raises(pytest.skip.Exception, match=r"Capabilities.reconcile is False"):
        suite.test_reconcile_knows_a_sent_batch(provider)


def test_saying_a_person_settles_ambiguous_sends_is_a_declared_skip() -> None:
    class Declared(FromTheDocs):
        ambiguous_sends_need_a_person = True

    suite = ProviderConformance()
    with pytest.raises(pytest.skip.Exception, match="declared: ambiguous sends need a person"):
        suite.test_ambiguous_sends_can_be_settled(Declared())

    class Both(LoopbackProvider):
        ambiguous_sends_need_a_person = True

    with pytest.raises(AssertionError, match="contradicts Capabilities"):
        suite.test_ambiguous_sends_can_be_settled(Both())


def test_a_simulation_declared_impossible_is_skipped_with_its_reason() -> None:
    class Impossible(ProviderConformance):
        cannot_simulate = {"timeout_after_accept": "the fake answers synchronously"}

    with pytest.raises(pytest.skip.Exception, match="declared impossible.*answers synchronously"):
        Impossible().test_timeout_after_accept_is_ambiguous(LoopbackProvider())


def test_a_timeout_after_accept_reported_as_nothing_sent_fails() -> None:
    suite = Loopback()
    with pytest.raises(AssertionError, match="would send these messages twice"):
        suite.test_timeout_after_accept_is_ambiguous(Liar())
    suite.test_timeout_after_accept_is_ambiguous(LoopbackProvider())  # the honest one passes
    suite.test_unreachable_gateway_sent_nothing(LoopbackProvider())


def test_an_ambiguous_error_before_anything_left_fails() -> None:
    class Unsure(Loopback):
        @contextlib.contextmanager
        def gateway_unreachable(self, provider: LoopbackProvider) -> Iterator[None]:
            provider.fail_next(AmbiguousSendError("connection refused"))
            yield

    with pytest.raises(AssertionError, match="sent_nothing=False: nothing can have arrived"):
        Unsure().test_unreachable_gateway_sent_nothing(LoopbackProvider())


def test_an_error_that_is_not_a_provider_error_fails() -> None:
    class Raw(Loopback):
        @contextlib.contextmanager
        def gateway_unreachable(self, provider: LoopbackProvider) -> Iterator[None]:
            provider.fail_next(OSError("connection refused"))  # type: ignore[arg-type]
            yield

    with pytest.raises(AssertionError, match="raised OSError.*must raise a smskit.errors"):
        Raw().test_unreachable_gateway_sent_nothing(LoopbackProvider())


def test_a_failure_that_still_sent_fails_the_reconcile_half() -> None:
    class AcceptsAnyway(Loopback):
        @contextlib.contextmanager
        def gateway_unreachable(self, provider: LoopbackProvider) -> Iterator[None]:
            provider.fail_next(TransientProviderError("reset"), after_accept=True)
            yield

    with pytest.raises(AssertionError, match="sent_nothing=True was wrong"):
        AcceptsAnyway().test_unreachable_gateway_sent_nothing(LoopbackProvider())


class Signed(LoopbackProvider):
    """A provider whose gateway signs callbacks (HMAC over the URL and the body)."""

    key = b"k"

    def sign(self, url: str, body: bytes) -> str:
        return hmac.new(self.key, url.encode() + body, "sha256").hexdigest()

    def verify_webhook(self, request: WebhookRequest) -> AuthResult:
        given = request.headers.get("x-signature")
        if given is None:
            return AuthResult.MISSING
        expected = self.sign(request.url or "", request.body)
        return AuthResult.OK if hmac.compare_digest(given, expected) else AuthResult.WRONG


class SignedCallbacks(Loopback):
    def status_callback(self, provider: Signed, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        headers, body = super().status_callback(provider, url, message, result)
        return {**headers, "X-Signature": provider.sign(url, body)}, body


def test_a_signed_callback_passes_and_a_tampered_one_is_refused() -> None:
    suite = SignedCallbacks()
    suite.test_status_callback_passes_the_gate(Signed())
    suite.test_tampered_callback_is_refused(Signed())

    class PresenceOnly(Signed):
        def verify_webhook(self, request: WebhookRequest) -> AuthResult:
            return AuthResult.OK if "x-signature" in request.headers else AuthResult.MISSING

    with pytest.raises(AssertionError, match="whose body was changed must be refused"):
        suite.test_tampered_callback_is_refused(PresenceOnly())
    with pytest.raises(AssertionError, match="the gate refused the delivery callback: 401"):
        Loopback().test_status_callback_passes_the_gate(Signed())  # no signature sent


def test_a_callback_read_as_something_else_fails() -> None:
    class Misreads(LoopbackProvider):
        def parse_webhook(self, request: WebhookRequest) -> WebhookPayload:
            data = request.data
            if not isinstance(data, dict) or "message_id" not in data:
                raise ValidationError("not ours")
            return WebhookPayload(statuses=[StatusEvent(provider=self.name, state=State.SENT,
                                                        message_id=data["message_id"])])

    with pytest.raises(AssertionError, match="must read as delivered, not sent"):
        Loopback().test_status_callback_passes_the_gate(Misreads())


_RUN = '''
import contextlib, json, pytest
from smskit.testing.conformance import ProviderConformance
from test_conformance_suite import FromTheDocs, Loopback
from smskit.providers.loopback import LoopbackProvider


class TestFromTheDocs(ProviderConformance):
    @pytest.fixture
    def provider(self):
        return FromTheDocs()


class TestLoopback(Loopback):
    @pytest.fixture
    def provider(self):
        return LoopbackProvider()
'''


def test_the_end_of_the_run_lists_every_skip_and_failure(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(_RUN, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_mine.py")],
        capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path, env=env)
    out = done.stdout
    assert done.returncode == 1, out
    section = out.split("smskit conformance", 1)[1]
    lines = [line.strip() for line in section.splitlines()]
    docs = "provider conformance on docs (TestFromTheDocs): 3 passed, 3 failed, 11 skipped"
    assert docs in lines, out
    assert "provider conformance on loopback (TestLoopback): 15 passed, 0 failed, 2 skipped" \
        in lines, out
    expected = [
        "FAILED unreachable_gateway_sent_nothing [errors]: TestFromTheDocs does not implement "
        "gateway_unreachable(provider)",
        "FAILED ambiguous_sends_can_be_settled [reconcile]: the provider has no way to confirm",
        "skipped reconcile_knows_a_sent_batch [reconcile]: Capabilities.reconcile is False: "
        "not claimed, not checked",
        "skipped balance_is_decimal [balance]: Capabilities.balance is False",
        "skipped refused_number_is_rejected [send]: no refused_phone fixture",
        "skipped tampered_callback_is_refused [webhooks]: the provider adds no check of its own",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, out)

