"""Twilio's wire format, webhooks, signature and reconciliation rule, without any I/O."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import pytest

from smskit.config import Secret
from smskit.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConfigurationError,
    InvalidPhoneError,
    ProviderError,
    ProviderNotFoundError,
    RateLimitedError,
    TransientProviderError,
    ValidationError,
)
from smskit.models import Message, State
from smskit_twilio import wire
from smskit_twilio.reconcile import Lookup, comparable, match_sent
from smskit_twilio.signature import compute_signature, url_variants, validate_signature
from smskit_twilio.webhooks import (
    SignatureCheck,
    WebhookSignatureError,
    decode_form,
    keyword_kind,
    parse_webhook,
)

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.timezone.utc)
SID = "SM" + "a" * 32
FORM = {"content-type": "application/x-www-form-urlencoded"}


def resource(**fields: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {
        "sid": SID, "status": "queued", "to": "+5511987654321", "from": "+15005550006",
        "body": "Olá", "direction": "outbound-api", "account_sid": "AC" + "1" * 32,
        "messaging_service_sid": None, "error_code": None, "error_message": None,
        "num_segments": "1", "price": None, "price_unit": "USD",
        "date_created": "Mon, 02 Mar 2026 15:00:00 +0000", "date_sent": None,
        "date_updated": "Mon, 02 Mar 2026 15:00:00 +0000",
    }
    base.update(fields)
    return base


# -- requests ---------------------------------------------------------------------------------

def test_send_form_names_recipient_body_sender_and_callback() -> None:
    message = Message.new("+5511987654321", "Olá Ana")
    form = wire.build_send_form(message, from_="+15005550006",
                                status_callback="https://x.test/webhooks/twilio/status?token=t")
    assert form == [("To", "+5511987654321"), ("Body", "Olá Ana"), ("From", "+15005550006"),
                    ("StatusCallback", "https://x.test/webhooks/twilio/status?token=t")]
    service = wire.build_send_form(message, messaging_service_sid="MG" + "0" * 32)
    assert ("MessagingServiceSid", "MG" + "0" * 32) in service
    assert not any(name in ("From", "StatusCallback") for name, _ in service)


def test_send_form_refuses_what_twilio_would_refuse() -> None:
    with pytest.raises(InvalidPhoneError):
        wire.build_send_form(Message.new("11987654321", "x"), from_="+15005550006")
    with pytest.raises(ValidationError):
        wire.build_send_form(Message.new("+5511987654321", "  "), from_="+15005550006")
    with pytest.raises(ConfigurationError):
        wire.build_send_form(Message.new("+5511987654321", "x"))


def test_list_query_uses_twilios_filter_names() -> None:
    query = wire.build_list_query(to="+5511987654321", from_="+15005550006",
                                  date_sent_after=dt.date(2026, 3, 1), page_size=1000)
    assert query == [("To", "+5511987654321"), ("From", "+15005550006"),
                     ("DateSent>", "2026-03-01"), ("PageSize", "1000")]
    assert "DateSent%3E=2026-03-01" in urlencode(query)
    with pytest.raises(ConfigurationError):
        wire.build_list_query(page_size=1001)


# -- answers ----------------------------------------------------------------------------------

def test_parse_message_resource() -> None:
    msg = wire.parse_message(resource(status="undelivered", error_code=30003, price="-0.00750",
                                      date_sent="Mon, 02 Mar 2026 15:00:05 +0000"))
    assert msg.sid == SID and msg.outbound and msg.state is State.ERROR
    assert msg.price == Decimal("-0.00750") and msg.num_segments == 1
    assert msg.date_created == NOW and msg.date_sent == NOW + dt.timedelta(seconds=5)
    event = msg.to_event("our-id")
    assert event.message_id == "our-id" and event.provider_message_id == SID
    assert event.state is State.ERROR and event.error_code == "30003"
    assert event.error_text == "unreachable destination handset"


def test_parse_message_refuses_a_resource_without_sid() -> None:
    with pytest.raises(ProviderError):
        wire.parse_message({"status": "queued"})
    with pytest.raises(ProviderError):
        wire.parse_message([])


@pytest.mark.parametrize(("status", "state"), [
    ("accepted", State.SENT), ("scheduled", State.SENT), ("queued", State.SENT),
    ("sending", State.SENT), ("sent", State.SENT), ("delivered", State.DELIVERED),
    ("read", State.DELIVERED), ("undelivered", State.ERROR), ("failed", State.REJECTED),
    ("canceled", State.CANCELED), ("partially_delivered", State.SENT), ("SENT", State.SENT),
    (None, State.SENT),
])
def test_status_mapping(status: Optional[str], state: State) -> None:
    assert wire.state_for(status) is state


def test_error_code_is_kept_only_with_a_failure() -> None:
    assert wire.status_event(SID, "sent", 30003).error_code is None
    failed = wire.status_event(SID, "failed", 30008)
    assert failed.state is State.REJECTED and failed.error_code == "30008"
    unknown = wire.status_event(SID, "undelivered", 39999, error_message="odd")
    assert unknown.error_text == "odd"
    assert not failed.opted_out
    assert wire.status_event(SID, "failed", 21610).opted_out  # the core blacklists then


def test_page_and_balance() -> None:
    page = wire.parse_message_page({"messages": [resource()], "next_page_uri": "/2010-04-01/x"})
    assert [m.sid for m in page.messages] == [SID] and page.next_page_uri == "/2010-04-01/x"
    assert wire.parse_message_page({"messages": []}).next_page_uri is None
    with pytest.raises(ProviderError):
        wire.parse_message_page({"messages": [], "next_page_uri": "https://evil.test/x"})
    balance = wire.parse_balance({"balance": "12.34567", "currency": "USD"})
    assert balance == wire.Balance(Decimal("12.34567"), "USD")
    with pytest.raises(ProviderError):
        wire.parse_balance({"balance": "lots"})


def test_rfc2822_dates() -> None:
    assert wire.parse_datetime("Tue, 26 Jul 2016 12:50:07 +0000") == dt.datetime(
        2016, 7, 26, 12, 50, 7, tzinfo=dt.timezone.utc)
    assert wire.parse_datetime("Tue, 26 Jul 2016 09:50:07 -0300").hour == 12  # type: ignore[union-attr]
    assert wire.parse_datetime("yesterday") is None
    assert wire.parse_datetime(None) is None


@pytest.mark.parametrize(("status", "body", "headers", "send", "kind"), [
    (401, {"code": 20003, "message": "Authenticate"}, {}, True, AuthenticationError),
    (404, {"code": 20404}, {}, False, ProviderNotFoundError),
    (429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "3"}, True,
     RateLimitedError),
    (503, None, {"Retry-After": "2"}, True, RateLimitedError),
    (408, None, {}, True, TransientProviderError),
    (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}, {}, True,
     wire.TwilioRequestError),
    (500, {"code": 20500}, {}, True, AmbiguousSendError),
    (503, None, {}, True, AmbiguousSendError),
    (500, None, {}, False, ProviderError),
])
def test_error_mapping(status: int, body: Any, headers: Dict[str, str], send: bool,
                       kind: type) -> None:
    exc = wire.error_for_response(status, body, headers, what="POST Messages.json", send=send)
    assert type(exc) is kind
    if status == 429:
        assert isinstance(exc, RateLimitedError) and exc.retry_after == 3.0 and exc.sent_nothing
    if isinstance(exc, AmbiguousSendError):
        assert not exc.sent_nothing


def test_recipient_errors_are_told_apart_and_secrets_masked() -> None:
    opted = wire.error_for_response(400, {"code": 21610, "message": "unsubscribed s3cret"}, {},
                                    what="POST Messages.json", send=True, secrets=["s3cret"])
    assert isinstance(opted, wire.TwilioRequestError)
    assert opted.code == 21610 and opted.about_recipient and opted.sent_nothing
    assert "s3cret" not in str(opted) and "21610" in str(opted)
    config = wire.error_for_response(400, {"code": 21606}, {}, what="POST Messages.json",
                                     send=True)
    assert isinstance(config, wire.TwilioRequestError) and not config.about_recipient


# -- signature --------------------------------------------------------------------------------

def test_signature_matches_twilios_published_example() -> None:
    # The example of Twilio's webhook security page: auth token 12345.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert validate_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not validate_signature("12346", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not validate_signature("12345", url + "&x=1", params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def test_signature_url_variants_add_or_drop_the_default_port_only() -> None:
    assert url_variants("https://a.test/x?y=1") == ["https://a.test/x?y=1",
                                                   "https://a.test:443/x?y=1"]
    assert url_variants("http://a.test:80/x") == ["http://a.test/x", "http://a.test:80/x"]
    assert url_variants("https://u:p@[::1]:8443/x") == ["https://u:p@[::1]/x",
                                                       "https://u:p@[::1]:8443/x"]
    signed = compute_signature("t", "https://a.test:443/x", {"A": "1"})
    assert validate_signature("t", "https://a.test/x", {"A": "1"}, signed)


def test_unknown_algorithm_fails_closed() -> None:
    assert not validate_signature("t", "https://a.test/", {}, "x", algorithm="HMAC_MD5")
    with pytest.raises(ValueError, match="unsupported"):
        compute_signature("t", "https://a.test/", {}, algorithm="HMAC_MD5")


# -- webhooks ---------------------------------------------------------------------------------

STATUS_FORM = [("AccountSid", "AC" + "1" * 32), ("ApiVersion", "2010-04-01"),
               ("ErrorCode", "30007"), ("From", "+15005550006"), ("MessageSid", SID),
               ("MessageStatus", "undelivered"), ("SmsSid", SID), ("SmsStatus", "undelivered"),
               ("To", "+5511987654321")]
INBOUND_FORM = [("AccountSid", "AC" + "1" * 32), ("Body", "Quero sim ✓"),
                ("From", "+5511987654321"), ("MessageSid", "SM" + "b" * 32), ("NumMedia", "0"),
                ("SmsStatus", "received"), ("To", "+15005550006")]
URL = "https://sms.example.com/webhooks/twilio/status?token=t0k"


def signed(params: List[Tuple[str, str]], url: str = URL,
           token: str = "tw-token") -> Dict[str, str]:
    return {**FORM, "x-twilio-signature": compute_signature(token, url, params)}


def test_status_callback_becomes_a_status_event() -> None:
    check = SignatureCheck(Secret("tw-token"))
    body = urlencode(STATUS_FORM).encode()
    payload = parse_webhook("status", signed(STATUS_FORM), body, url=URL, check=check)
    (event,) = payload.statuses
    assert event.provider == "twilio" and event.provider_message_id == SID
    assert event.state is State.ERROR and event.error_code == "30007"
    assert event.error_text == "message filtered by the carrier"
    assert not payload.inbound


def test_incoming_message_becomes_inbound_and_kind_follows_the_body() -> None:
    body = urlencode(INBOUND_FORM).encode()
    payload = parse_webhook("status", FORM, body)  # a reply posted to the status URL
    (inbound,) = payload.inbound
    assert inbound.provider_reply_id == "SM" + "b" * 32
    assert inbound.phone == "+5511987654321" and inbound.body == "Quero sim ✓"


def test_a_forged_or_unsigned_webhook_is_refused() -> None:
    check = SignatureCheck(Secret("tw-token"))
    body = urlencode(STATUS_FORM).encode()
    with pytest.raises(WebhookSignatureError, match="no X-Twilio-Signature"):
        parse_webhook("status", FORM, body, url=URL, check=check)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        parse_webhook("status", signed(STATUS_FORM, token="other"), body, url=URL, check=check)
    tampered = urlencode([*STATUS_FORM[:-1], ("To", "+5511900000000")]).encode()
    with pytest.raises(WebhookSignatureError):
        parse_webhook("status", signed(STATUS_FORM), tampered, url=URL, check=check)
    rule = {**signed(STATUS_FORM), "x-twilio-webhooks-signature-settings":
            "key=K,algorithm=HMAC_SHA256"}
    with pytest.raises(WebhookSignatureError, match="twilio_webhook_shared_key"):
        parse_webhook("status", rule, body, url=URL, check=check)


def test_a_webhooks_rule_signature_uses_the_shared_key_and_sha256() -> None:
    check = SignatureCheck(Secret("tw-token"), Secret("shared"))
    body = urlencode(STATUS_FORM).encode()
    headers = {**FORM, "X-Twilio-Webhooks-Signature-Settings": "key=K,algorithm=HMAC_SHA256",
               "X-Twilio-Signature": compute_signature("shared", URL, STATUS_FORM,
                                                       "HMAC_SHA256")}
    assert parse_webhook("status", headers, body, url=URL, check=check).statuses


@pytest.mark.parametrize("body", [b"not json", b"{}", b"", b"=x", b"Body=%FF%FE",
                                  b"AccountSid=AC1&To=%2B1"])
def test_malformed_webhooks_are_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_webhook("status", FORM, body)


def test_json_is_not_twilios_webhook_format() -> None:
    with pytest.raises(ValidationError, match="x-www-form-urlencoded"):
        parse_webhook("status", {"Content-Type": "application/json"}, b'{"a": 1}')
    with pytest.raises(ValidationError, match="unknown Twilio webhook kind"):
        parse_webhook("other", FORM, urlencode(STATUS_FORM).encode())


@pytest.mark.parametrize(("body", "opt_out_type", "expected"), [
    ("STOPALL", None, "STOPALL"), (" quit ", None, "QUIT"), ("PARE", "STOP", "STOP"),
    ("START", None, None), ("stop please", None, None), ("STOP", "HELP", None),
])
def test_an_opt_out_reaches_the_kit_as_opt_out(body: str, opt_out_type: Optional[str],
                                               expected: Optional[str]) -> None:
    form = [(k, v) for k, v in INBOUND_FORM if k != "Body"] + [("Body", body)]
    if opt_out_type:
        form.append(("OptOutType", opt_out_type))
    (inbound,) = parse_webhook("reply", FORM, urlencode(form).encode()).inbound
    assert inbound.opt_out == expected


def test_decode_form_keeps_repeated_and_blank_fields() -> None:
    assert decode_form(b"Body=&MediaUrl0=a&MediaUrl0=b") == [
        ("Body", ""), ("MediaUrl0", "a"), ("MediaUrl0", "b")]


@pytest.mark.parametrize(("body", "opt_out_type", "kind"), [
    ("STOP", None, "opt_out"), (" stopall ", None, "opt_out"), ("Unsubscribe", None, "opt_out"),
    ("quit", None, "opt_out"), ("START", None, "opt_in"), ("unstop", None, "opt_in"),
    ("yes", None, "opt_in"), ("help", None, "help"), ("INFO", None, "help"),
    ("stop please", None, None), ("Pare", None, None), ("PARE", "STOP", "opt_out"),
    ("Volta", "START", "opt_in"), ("stop", "", "opt_out"),
])
def test_keyword_kind(body: str, opt_out_type: Optional[str], kind: Optional[str]) -> None:
    assert keyword_kind(body, opt_out_type) == kind


# -- the reconciliation rule ------------------------------------------------------------------

OUR_FROM = "+15005550006"


def candidate(sid: str, body: Optional[str], created: dt.datetime, *, to: str = "+5511987654321",
              sender: str = OUR_FROM, status: str = "sent",
              direction: str = "outbound-api") -> wire.TwilioMessage:
    return wire.TwilioMessage(sid=sid, status=status, to=to, from_=sender, body=body,
                              direction=direction, date_created=created)


def ours(c: wire.TwilioMessage) -> bool:
    return c.from_ == OUR_FROM


def outgoing(body: str, created: dt.datetime = NOW, phone: str = "+5511987654321") -> Message:
    return Message(phone=phone, body=body, state=State.OUTGOING, created_at=created)


def settle(lookups: List[Lookup], candidates: List[wire.TwilioMessage]) -> Any:
    return match_sent(lookups, candidates, is_ours=ours, skew=dt.timedelta(minutes=2),
                      near=dt.timedelta(seconds=90))


def test_a_listed_message_with_our_body_settles_the_send() -> None:
    message = outgoing("Seu código é 1234")
    found = settle([Lookup(message)], [candidate("SM1", "Seu código é 1234",
                                                 NOW + dt.timedelta(seconds=3),
                                                 status="delivered")])
    (result,) = found.results
    assert result.message_id == message.id and result.provider_message_id == "SM1"
    assert result.state is State.SENT
    assert [e.state for e in found.statuses] == [State.DELIVERED]
    assert not found.undecided


def test_nothing_listed_means_never_created() -> None:
    found = settle([Lookup(outgoing("Oi"))], [])
    assert not found.results and not found.undecided


def test_only_our_recent_outbound_messages_to_that_phone_count() -> None:
    message = outgoing("Oi")
    others = [
        candidate("SM-old", "Oi", NOW - dt.timedelta(minutes=10)),  # before we persisted it
        candidate("SM-in", "Oi", NOW, direction="inbound"),
        candidate("SM-them", "Oi", NOW, sender="+15550001111"),  # another sender
        candidate("SM-other-phone", "Oi", NOW, to="+5521998765432"),
    ]
    assert not settle([Lookup(message)], others).results


def test_smart_encoding_and_blanks_do_not_hide_a_match() -> None:
    message = outgoing("“Olá” — até amanhã…  ok")
    assert comparable(message.body) == comparable('"Olá" - até amanhã... ok')
    found = settle([Lookup(message)], [candidate("SM1", '"Olá" - até amanhã... ok', NOW)])
    assert [r.provider_message_id for r in found.results] == ["SM1"]


def test_each_listed_message_is_claimed_once_newest_by_the_last_sent() -> None:
    first, second = outgoing("Igual"), outgoing("Igual")
    listed = [candidate("SM-new", "Igual", NOW + dt.timedelta(seconds=2)),
              candidate("SM-old", "Igual", NOW + dt.timedelta(seconds=1))]
    found = settle([Lookup(first), Lookup(second)], listed)
    assert {(r.message_id, r.provider_message_id) for r in found.results} == {
        (second.id, "SM-new"), (first.id, "SM-old")}
    only_one = settle([Lookup(first), Lookup(second)], listed[:1])
    assert [r.message_id for r in only_one.results] == [second.id]
    taken = match_sent([Lookup(first)], listed, is_ours=ours, skew=dt.timedelta(minutes=2),
                       near=dt.timedelta(seconds=90), taken={"SM-new", "SM-old"})
    assert not taken.results


def test_a_hidden_body_or_a_near_miss_cannot_be_decided() -> None:
    message = outgoing("Oi")
    hidden = settle([Lookup(message)], [candidate("SM1", "", NOW)])
    assert not hidden.results and "hidden" in hidden.undecided[0]
    attempted = NOW + dt.timedelta(seconds=10)
    rewritten = settle([Lookup(message, attempted)],
                       [candidate("SM2", "Oi (editado)", attempted + dt.timedelta(seconds=1))])
    assert not rewritten.results and "another body" in rewritten.undecided[0]
    # Without knowing when we sent, a different body is simply another message.
    assert not settle([Lookup(message)], [candidate("SM2", "Oi (editado)", NOW)]).undecided
