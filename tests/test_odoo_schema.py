"""Schema detection: the three known variants mapped, and a clear error naming what is missing."""

from __future__ import annotations

import pytest

from smskit.models import State
from smskit_odoo.adapter import EnvAdapter
from smskit_odoo.errors import OdooSchemaError
from smskit_odoo.schema import detect_schema
from smskit_odoo.testing import FakeOdoo
from smskit_odoo.testing.env import FakeEnv, fake_call_kw
from smskit_odoo.testing.orm import Field


def adapter(fake: FakeOdoo) -> EnvAdapter:
    return EnvAdapter(FakeEnv(fake), call_kw=fake_call_kw)


def test_sms_base_sr() -> None:
    fake = FakeOdoo("sms_base_sr")
    schema = detect_schema(adapter(fake))
    assert (schema.variant, schema.model) == ("sms_base_sr", "sms.message")
    assert {c: schema.fields[c] for c in ("phone", "provider_id", "delivered_at", "direction",
                                          "request_id", "parent")} == {
        "phone": "phone", "provider_id": "provider_message_id",
        "delivered_at": "delivered_date", "direction": "direction",
        "request_id": "provider_job_id", "parent": "parent_id"}
    assert all(schema.states[s] == s.value for s in State)
    assert schema.direction_value(False) == "outgoing"
    assert schema.direction_value(True) == "incoming"
    assert schema.id_storage == "convention:provider_reference"
    assert schema.has_blacklist and schema.has_acrux and schema.note_subtype_id
    assert schema.degraded == ()
    assert "provider_reference" in schema.describe()


def test_sms_core_unified_with_the_deployment_fields() -> None:
    schema = detect_schema(adapter(FakeOdoo("sms_core_unified", smskit_fields=True)))
    assert schema.variant == "sms_core_unified"
    assert (schema.fields["provider_id"], schema.fields["delivered_at"]) == (
        "external_id", "delivery_date")
    assert schema.id_storage == "field:x_smskit_id"
    assert schema.fields["batch_id"] == "x_smskit_batch_id"
    assert "no direction field" in schema.describe()


def test_stock_sms_is_a_degraded_target() -> None:
    schema = detect_schema(adapter(FakeOdoo("stock", acrux=False)))
    assert (schema.variant, schema.model) == ("stock", "sms.sms")
    assert schema.fields["phone"] == "number"
    assert schema.states[State.DELIVERED] == "sent"
    assert schema.states[State.EXPIRED] == schema.states[State.REJECTED] == "error"
    assert schema.rank("sent") == State.SENT.rank
    assert schema.id_storage == "sidecar" and "x_smskit_id" in schema.describe()
    assert not schema.has_acrux
    text = schema.describe()
    for hint in ("no delivered state: shown as sent", "no provider message id"):
        assert hint in text


def test_the_message_model_can_be_forced_and_the_id_field_named() -> None:
    fake = FakeOdoo("sms_base_sr")
    fake.orm.model("sms.message").fields["x_note"] = Field("text", "Note")
    schema = detect_schema(adapter(fake), id_field="x_note")
    assert schema.id_storage == "convention:x_note"
    with pytest.raises(OdooSchemaError, match="odoo_id_field 'state' is not a text field"):
        detect_schema(adapter(FakeOdoo("stock")), id_field="state")
    with pytest.raises(OdooSchemaError, match="neither sms.sms is installed"):
        detect_schema(adapter(FakeOdoo("sms_base_sr")), model="sms.sms")


def test_missing_model_and_fields_are_named() -> None:
    with pytest.raises(OdooSchemaError, match="neither sms.message nor sms.sms") as caught:
        detect_schema(adapter(FakeOdoo("none")))
    assert "installed SMS-related modules: mail" in str(caught.value)
    fake = FakeOdoo("sms_base_sr")
    fields = fake.orm.model("sms.message").fields
    del fields["body"]
    fields["phone"] = Field("integer", "Phone")
    with pytest.raises(OdooSchemaError) as caught:
        detect_schema(adapter(fake))
    text = str(caught.value)
    assert "phone (one of phone, number" in text and "body (one of body" in text
    assert "sms.message.phone is a integer field" in text


def test_missing_states_are_named() -> None:
    fake = FakeOdoo("sms_base_sr")
    fake.orm.model("sms.message").fields["state"].selection = [("draft", "Draft"),
                                                              ("done", "Done")]
    with pytest.raises(OdooSchemaError, match="lacks the states outgoing, sent, error"):
        detect_schema(adapter(fake))


def test_a_user_without_module_rights_still_detects_by_models() -> None:
    fake = FakeOdoo("sms_base_sr")
    uid = fake.add_user("bot", "pw")
    fake.deny(uid, "ir.module.module", "read")
    schema = detect_schema(EnvAdapter(FakeEnv(fake, uid), call_kw=fake_call_kw))
    assert (schema.model, schema.variant) == ("sms.message", "custom sms.message")
