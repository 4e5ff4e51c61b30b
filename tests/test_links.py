"""Link tracking: finding URLs, short links in bodies, segments on the short form, storage.

The storage tests run on the memory store, SQLite and (with SMSKIT_TEST_POSTGRES_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import smskit.outbox.links as links_module
from smskit.config import Settings
from smskit.errors import BodyTooLongError, ConfigurationError
from smskit.kit import SmsKit
from smskit.models import Message, State
from smskit.outbox import Composer
from smskit.outbox.links import (
    LinkShortener,
    add_messages_with_links,
    find_urls,
    shortener_for,
    to_uri,
)
from smskit.providers.loopback import LoopbackProvider
from smskit.segments import count_segments
from smskit.store.analytics import Link
from smskit.store.memory import MemoryStore

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 10, 15, 0, tzinfo=UTC)
BASE = "https://sms.exemplo.com.br"
SHORT = re.compile(re.escape(BASE) + r"/l/([0-9A-Za-z]{8})")
PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_NO_PG = "set SMSKIT_TEST_POSTGRES_URL=postgresql://user@127.0.0.1:5432/db to run on PostgreSQL"
LONG_URL = ("https://pagamentos.exemplo.com.br/faturas/2024/05/boleto?cliente=8812734&"
            "contrato=99182-3&origem=sms&campanha=cobranca-maio")


@pytest.fixture(params=[
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=_NO_PG)),
])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh store of each kind."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore
    from smskit.store.sql.tables import VERSION_TABLE

    made = SqlStore(PG_URL if request.param == "postgresql" else
                    f"sqlite:///{tmp_path / 'smskit.db'}")
    if request.param == "postgresql":
        with made._engine.begin() as conn:
            names = ", ".join(sorted(set(made._engine.dialect.get_table_names(conn))
                                     - {VERSION_TABLE}))
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    yield made
    made.close()


def settings(**values: str) -> Settings:
    return Settings.load(environ={}, **values)


def tracking_kit(store: Any, **values: str) -> SmsKit:
    values.setdefault("public_url", BASE)
    values.setdefault("link_tracking", "true")
    return SmsKit(settings(**values), store=store, provider=LoopbackProvider(),
                  clock=lambda: NOW)


# -- finding URLs ---------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "expected"), [
    ("Sua fatura: https://pag.exemplo.com.br/f/123?x=1. Dúvidas? Responda.",
     ["https://pag.exemplo.com.br/f/123?x=1"]),
    ("Acesse www.exemplo.com.br/ajuda, ou ligue.", ["www.exemplo.com.br/ajuda"]),
    ("Dois: https://a.com.br/x; e http://b.com.br/y!", ["https://a.com.br/x", "http://b.com.br/y"]),
    ("(veja https://pt.wikipedia.org/wiki/Brasil_(pa%C3%ADs))",
     ["https://pt.wikipedia.org/wiki/Brasil_(pa%C3%ADs)"]),
    ("[https://exemplo.com/a] e {https://exemplo.com/b}",
     ["https://exemplo.com/a", "https://exemplo.com/b"]),
    ('"https://exemplo.com/citado" …', ["https://exemplo.com/citado"]),
    ("Promoção em https://loja.com.br/promoção…", ["https://loja.com.br/promoção"]),
    ("HTTPS://EXEMPLO.COM.BR/Maiusculas", ["HTTPS://EXEMPLO.COM.BR/Maiusculas"]),
    ("Olá Ana, sua consulta é amanhã às 10h. Responda SIM ou NÃO.", []),
    ("e-mail fulano@www.exemplo.com.br não é link", []),
    ("ftp://arquivos.exemplo.com e https:// sozinho e https://semponto", []),
    ("https://usuario:senha@exemplo.com/ não", []),
    ("www.incompleto e xhttps://colado.com", []),
])
def test_find_urls(body: str, expected: List[str]) -> None:
    found = find_urls(body)
    assert [text for _, _, text in found] == expected
    assert all(body[start:end] == text for start, end, text in found)


def test_to_uri_makes_an_ascii_web_address() -> None:
    assert to_uri("www.exemplo.com.br/a") == "http://www.exemplo.com.br/a"
    assert to_uri("https://açaí.com.br/promoção?q=pão") == (
        "https://xn--aa-4iaz.com.br/promo%C3%A7%C3%A3o?q=p%C3%A3o")
    assert to_uri("https://exemplo.com/a%20b?x=1&y=2#frag") == (
        "https://exemplo.com/a%20b?x=1&y=2#frag")
    assert to_uri("https://exemplo.com:8443/x") == "https://exemplo.com:8443/x"
    for bad in ("javascript:alert(1)", "ftp://x.com", "https://u:p@x.com", "https:///x",
                "https://exemplo.com:99999/"):
        assert to_uri(bad) is None


# -- shortening -------------------------------------------------------------------------------
def test_each_url_gets_its_own_code_and_the_rest_of_the_body_is_kept() -> None:
    shortener = LinkShortener(BASE + "/")
    body = "Olá! Fatura: https://a.com.br/f?id=1. Ajuda: www.b.com.br/ajuda, até!"
    short, made = shortener.shorten(body, message_id="M1", campaign_id="camp", now=NOW)
    codes = SHORT.findall(short)
    assert short == (f"Olá! Fatura: {BASE}/l/{codes[0]}. Ajuda: {BASE}/l/{codes[1]}, até!")
    assert [(k.code, k.url, k.message_id, k.campaign_id) for k in made] == [
        (codes[0], "https://a.com.br/f?id=1", "M1", "camp"),
        (codes[1], "http://www.b.com.br/ajuda", "M1", "camp"),
    ]
    assert codes[0] != codes[1]
    assert shortener.pending == []  # nothing kept until the message is accepted


def test_a_body_without_urls_and_our_own_short_links_are_left_alone() -> None:
    shortener = LinkShortener(BASE)
    for body in ("Sem link nenhum, só texto.", f"Já curto: {BASE}/l/AbCd1234"):
        assert shortener.shorten(body, message_id="M", campaign_id=None, now=NOW) == (body, [])


def test_segments_and_cost_are_counted_on_the_short_form() -> None:
    body = f"Ola Ana, sua fatura de maio esta disponivel em {LONG_URL} . Obrigado!"
    assert count_segments(body).segments == 2
    plain = Composer(provider="loopback", max_segments=1)
    with pytest.raises(BodyTooLongError):
        plain.compose("+5511987654321", body, now=NOW)
    composer = Composer(provider="loopback", max_segments=1, links=LinkShortener(BASE))
    message = composer.compose("+5511987654321", body, now=NOW, campaign_id="c1")
    assert SHORT.search(message.body) and LONG_URL not in message.body
    assert message.segments == 1 == count_segments(message.body).segments
    assert message.cost == Decimal("0.08")
    [link] = composer.links.take() if composer.links else []
    assert (link.url, link.message_id, link.campaign_id) == (LONG_URL, message.id, "c1")


def test_a_body_too_long_even_when_short_keeps_no_link() -> None:
    composer = Composer(provider="loopback", max_segments=1, links=LinkShortener(BASE))
    with pytest.raises(BodyTooLongError):
        composer.compose("+5511987654321", "x" * 200 + " https://a.com.br", now=NOW)
    assert composer.links is not None and composer.links.pending == []


def test_tracking_needs_a_public_url() -> None:
    assert shortener_for(settings()) is None
    assert shortener_for(settings(link_tracking="true"), track_links=False) is None
    with pytest.raises(ConfigurationError, match="SMSKIT_PUBLIC_URL"):
        shortener_for(settings(link_tracking="true"))
    with pytest.raises(ConfigurationError, match="must be http"):
        shortener_for(settings(public_url="ftp://x"), track_links=True)
    chosen = shortener_for(settings(public_url=BASE, link_base_url="https://s.br/"),
                           track_links=True)
    assert chosen is not None and chosen.short_url("X") == "https://s.br/l/X"


def test_send_without_public_url_raises_and_stores_nothing() -> None:
    store = MemoryStore()
    kit = SmsKit(settings(link_tracking="true"), store=store, provider=LoopbackProvider())
    with pytest.raises(ConfigurationError):
        kit.send("+5511987654321", "Veja https://a.com.br")
    assert store.list_messages() == []


# -- through the kit ----------------------------------------------------------------------------
def test_send_stores_the_link_before_the_gateway_sees_the_short_body(store: Any) -> None:
    kit = tracking_kit(store)
    outcome = kit.send("(11) 98765-4321", "Oi {{ nome }}, pague em " + LONG_URL,
                       variables={"nome": "Ana"}, campaign_id="cobranca")
    assert outcome.state is State.SENT and outcome.message_id is not None
    message = store.get(outcome.message_id)
    [link] = store.links_of(outcome.message_id)
    assert message.body == f"Oi Ana, pague em {BASE}/l/{link.code}"
    assert message.segments == 1
    assert (link.url, link.campaign_id, link.created_at) == (LONG_URL, "cobranca", NOW)
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    assert [r.body for r in provider.sent] == [message.body]


def test_track_links_per_send_overrides_the_setting(store: Any) -> None:
    kit = tracking_kit(store, link_tracking="false")
    plain = kit.send("+5511987654321", "Veja https://a.com.br/x")
    tracked = kit.send("+5511987654322", "Veja https://a.com.br/x", track_links=True)
    assert store.get(plain.message_id).body == "Veja https://a.com.br/x"
    assert store.links_of(plain.message_id) == []
    assert SHORT.search(store.get(tracked.message_id).body)


def test_bulk_writes_one_link_call_per_chunk_and_a_rerun_adds_none(store: Any) -> None:
    calls: List[int] = []
    original = store.add_links

    def counting(batch: Any) -> Any:
        calls.append(len(batch))
        return original(batch)

    store.add_links = counting
    kit = tracking_kit(store)
    rows = [{"phone": f"+55119876500{i:02d}", "id": str(i)} for i in range(25)]
    text = "Seu pedido {{ id }}: https://loja.com.br/pedido/{{ id }} e www.loja.com.br"
    summary = kit.send_many(rows, text, campaign_id="black", idempotency_prefix="bf",
                            chunk_size=10, dispatch=False)
    assert summary.queued == 25
    assert calls == [20, 20, 10]  # two links per recipient, one call per chunk
    stored = store.list_messages(campaign_id="black", limit=100)
    codes = set()
    for message in stored:
        made = store.links_of(message.id)
        assert len(made) == 2
        assert {k.url for k in made} == {
            f"https://loja.com.br/pedido/{int(message.phone[-2:])}", "http://www.loja.com.br"}
        assert set(SHORT.findall(message.body)) == {k.code for k in made}
        codes.update(k.code for k in made)
    assert len(codes) == 50
    again = kit.send_many(rows, text, campaign_id="black", idempotency_prefix="bf",
                          chunk_size=10, dispatch=False)
    assert again.duplicates == 25
    assert sum(len(store.links_of(m.id)) for m in stored) == 50
    assert len(store.list_messages(limit=1000)) == 25


def test_a_taken_code_is_drawn_again_and_the_body_follows(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    kit = tracking_kit(store)
    draws = iter(["TakenAAA", "TakenAAA", "FreshBBB"])
    monkeypatch.setattr(links_module, "new_code", lambda length=8: next(draws))
    first = kit.send("+5511987654321", "Um: https://a.com.br/1", dispatch=False)
    second = kit.send("+5511987654322", "Dois: https://a.com.br/2", dispatch=False)
    assert store.get(first.message_id).body == f"Um: {BASE}/l/TakenAAA"
    assert store.get(second.message_id).body == f"Dois: {BASE}/l/FreshBBB"
    assert store.get_link("TakenAAA").url == "https://a.com.br/1"
    assert store.get_link("FreshBBB").message_id == second.message_id


def test_links_are_only_kept_for_messages_that_were_stored(store: Any) -> None:
    shortener = LinkShortener(BASE)
    first = Message.new("+5511987654321", "", idempotency_key="k1", created_at=NOW)
    body, made = shortener.shorten("https://a.com.br", message_id=first.id, campaign_id=None,
                                   now=NOW)
    shortener.keep(made)
    add_messages_with_links(store, shortener, [Message.new(
        "+5511987654321", body, id=first.id, idempotency_key="k1", created_at=NOW)])
    replay = Message.new("+5511987654321", "", idempotency_key="k1", created_at=NOW)
    body2, made2 = shortener.shorten("https://a.com.br", message_id=replay.id,
                                     campaign_id=None, now=NOW)
    shortener.keep(made2)
    [outcome] = add_messages_with_links(store, shortener, [Message.new(
        "+5511987654321", body2, id=replay.id, idempotency_key="k1", created_at=NOW)])
    assert not outcome.created and outcome.message.id == first.id
    assert store.get_link(made2[0].code) is None
    assert store.get_link(made[0].code) is not None


# -- the store's part (the LinkStore checks of smskit.testing.stores run in test_store.py) -------
def test_the_user_agent_is_cut_and_no_address_is_kept(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from smskit.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'ua.db'}")
    store.add_links([Link(code="Ua123456", url="https://a.com.br", message_id="M",
                          created_at=NOW)])
    store.record_click("Ua123456", NOW, "A" * 1000)
    with store._engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("link_clicks")]
        agent = conn.exec_driver_sql("SELECT user_agent FROM link_clicks").scalar()
    store.close()
    assert agent == "A" * 200
    assert not any("ip" in name or "addr" in name for name in columns)


# -- only the template's own links ---------------------------------------------------------------
@pytest.mark.parametrize(("template", "variables", "shortened", "kept"), [
    # a URL in a customer-editable field stays as it is: never a redirect on our domain
    ("Olá {{ nome }}!", {"nome": "Ana https://golpe.exemplo.net/pix"}, [],
     ["https://golpe.exemplo.net/pix"]),
    ("Pague: https://pagar.exemplo.com.br/f/{{ fatura }} ({{ obs }})",
     {"fatura": "8812", "obs": "veja www.golpe.exemplo.net"},
     ["https://pagar.exemplo.com.br/f/8812"], ["www.golpe.exemplo.net"]),
    # a variable that completes the host makes it a host the template did not choose
    ("Acesse https://loja.exemplo.com.br{{ resto }}", {"resto": ".golpe.net/x"}, [],
     ["https://loja.exemplo.com.br.golpe.net/x"]),
    ("Acesse https://loja.exemplo.com.br{{ resto }}", {"resto": "@golpe.net/x"}, [],
     ["https://loja.exemplo.com.br@golpe.net/x"]),
    # the path and the query may come from variables (a per-invoice link)
    ("Boleto: https://pagar.exemplo.com.br/{{ caminho }}?c={{ c }}",
     {"caminho": "b/77", "c": "9"}, ["https://pagar.exemplo.com.br/b/77?c=9"], []),
    # a default is not the template's text either (the value was missing)
    ("Veja {{ link | default('https://a.exemplo.com.br') }}", {}, [],
     ["https://a.exemplo.com.br"]),
])
def test_only_urls_the_template_holds_are_shortened(template: str, variables: Any,
                                                    shortened: List[str],
                                                    kept: List[str]) -> None:
    store = MemoryStore()
    kit = tracking_kit(store)
    outcome = kit.send("+5511987654321", template, variables=variables)
    body = store.get(outcome.message_id).body
    assert sorted(k.url for k in store.links_of(outcome.message_id)) == sorted(shortened)
    assert len(SHORT.findall(body)) == len(shortened)
    for text in kept:
        assert text in body


def test_template_spans_locate_the_template_text() -> None:
    from smskit.outbox.links import template_spans
    from smskit.template import Template

    pieces = Template("Oi {{ a }}, veja {{ b }}!").render_pieces({"a": "Ana", "b": "x"})
    assert "".join(text for text, _ in pieces) == "Oi Ana, veja x!"
    assert template_spans(pieces) == [(0, 3), (6, 13), (14, 15)]
