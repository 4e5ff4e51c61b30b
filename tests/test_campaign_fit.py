"""A campaign whose template needs a variable its audience lacks is refused when it is created,
naming the column; blank cells take the template's default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import pytest

from cli_helpers import cli, cli_env  # noqa: F401
from smskit.config import Settings
from smskit.errors import ValidationError
from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import Message, State
from smskit.outreach.campaigns import Campaigns
from smskit.outreach.contacts import make_contact
from smskit.plugins import Plugins
from smskit.providers.loopback import LoopbackProvider
from smskit.store.memory import MemoryStore


def make_kit() -> SmsKit:
    settings = Settings.load(environ={}, provider="loopback", database_url="memory://")
    return SmsKit(settings, store=MemoryStore(), provider=LoopbackProvider(),
                  plugins=Plugins(settings, entry_points=False))


def csv_audience(tmp_path: Path, text: str) -> Dict[str, Any]:
    path = tmp_path / "clientes.csv"
    path.write_text(text, encoding="utf-8")
    return {"type": "csv", "path": str(path), "phone_column": "telefone"}


def test_a_template_naming_a_column_the_csv_lacks_is_refused(tmp_path: Path) -> None:
    kit = make_kit()
    campaigns = Campaigns(kit)
    audience = csv_audience(tmp_path, "telefone;nome\n11910000000;Ana\n")
    with pytest.raises(ValidationError) as info:
        campaigns.create("fatura", "Olá {{ nome }}, sua fatura de {{ valor }} vence em "
                         "{{ vencimento.dia }}.", audience)
    assert str(info.value) == (
        f"the template needs 'valor', 'vencimento' but the audience (csv {audience['path']}) "
        "has no columns 'valor', 'vencimento' (columns: nome, telefone): add the column, give "
        "the value as a campaign variable, or a default in the template "
        '({{ valor | default("...") }})')
    assert campaigns.list_campaigns() == []  # nothing stored


def test_defaults_and_campaign_variables_fill_what_the_csv_lacks(tmp_path: Path) -> None:
    campaigns = Campaigns(make_kit())
    audience = csv_audience(tmp_path, "telefone;nome\n11910000000;Ana\n")
    created = campaigns.create("ok", "Olá {{ nome }}, {{ valor | default('sua fatura') }} vence "
                               "{{ dia }}.", audience, variables={"dia": "amanhã"})
    assert created.status == "draft"


def test_blank_cells_take_the_default_and_reject_without_one(tmp_path: Path) -> None:
    kit = make_kit()
    campaigns = Campaigns(kit)
    audience = csv_audience(tmp_path, "telefone;nome;cidade\n11910000000;Ana;Recife\n"
                                      "11910000001;;Olinda\n11910000002;Bia; \n")
    created = campaigns.create("blank", "Olá {{ nome | default('cliente') }} de {{ cidade }}",
                               audience)
    campaigns.start(created.id)
    campaigns.advance()
    kit.dispatch()
    messages = {m.phone: m for m in kit.store.list_messages(campaign_id=created.id)}
    assert messages["+5511910000000"].body == "Olá Ana de Recife"
    assert messages["+5511910000001"].body == "Olá cliente de Olinda"
    blank_city = messages["+5511910000002"]
    assert blank_city.state is State.REJECTED
    assert "'cidade' is missing" in (blank_city.error_text or "")


def test_a_tags_audience_is_checked_against_its_first_page() -> None:
    kit = make_kit()
    kit.store.save_contacts([
        make_contact("+5511910000000", name="Ana", tags=["vip"], variables={"cidade": "Recife"}),
        make_contact("+5511910000001", name="Bia", tags=["vip"], variables={"bairro": "Boa Vista"}),
    ])
    campaigns = Campaigns(kit)
    audience = {"type": "tags", "tags": ["vip"]}
    # Some recipient has each variable: a recipient without one is that message's problem.
    assert campaigns.create("ok", "{{ name }}: {{ cidade }} {{ bairro }}", audience)
    with pytest.raises(ValidationError) as info:
        campaigns.create("typo", "{{ nome }}", audience)
    assert str(info.value).startswith(
        "the template needs 'nome' but no recipient of the first page of the audience (tags "
        "vip) has the variable 'nome' (they have: bairro, cidade, name, phone)")
    # An audience with nobody in it yet cannot tell: the campaign is created.
    assert campaigns.create("empty", "{{ nome }}", {"type": "tags", "tags": ["nobody"]})


class PartnerVariables:
    """A plugin adding ``partner`` to every message (as the Odoo plugin does)."""

    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def prepare_message(self, message: Message,
                        context: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        self.seen.append(message.phone)
        return {"partner": {"name": "Parceiro"}}


def test_variables_a_plugin_adds_count(tmp_path: Path) -> None:
    kit = make_kit()
    plugin = PartnerVariables()
    kit.plugins.register(plugin, name="partners")
    campaigns = Campaigns(kit)
    audience = csv_audience(tmp_path, "telefone\n11910000000\n")
    assert campaigns.create("p", "Olá {{ partner.name }}", audience)
    assert plugin.seen == ["+5511910000000"]  # asked for the first recipient
    with pytest.raises(ValidationError, match="'pedido'"):
        campaigns.create("p", "Olá {{ partner.name }}, {{ pedido }}", audience)


def test_an_odoo_audience_knows_its_fields_without_a_connection() -> None:
    import smskit_odoo.plugin

    kit = make_kit()
    kit.plugins.register(smskit_odoo.plugin, name="odoo")
    campaigns = Campaigns(kit)
    audience = {"type": "odoo", "domain": [["city", "=", "Recife"]], "fields": ["name"]}
    assert campaigns.create("o", "Oi {{ name }}", audience)
    with pytest.raises(ValidationError, match=r"no column 'email' \(columns: name, phone\)"):
        campaigns.create("o", "Oi {{ email }}", audience)


def test_the_command_names_the_missing_column(cli_env: Dict[str, str],  # noqa: F811
                                              tmp_path: Path) -> None:
    path = tmp_path / "lista.csv"
    path.write_text("phone,nome\n11910000000,Ana\n", encoding="utf-8")
    result = cli("campaign", "create", "c", "-t", "Oi {{ nome }}, {{ valor }}", "--csv",
                 str(path), "--json")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no column 'valor' (columns: nome, phone)" in lines[0]
    listed = cli("campaign", "status", "--json")
    assert json.loads(listed.stdout) == []
