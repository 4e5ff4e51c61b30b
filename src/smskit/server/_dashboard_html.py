"""The dashboard's HTML: every number rendered here (escaped), the charts' data embedded as JSON
for ``static/dashboard.js``. Labels are in Brazilian Portuguese; numbers use its separators."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any, Iterable, List, Optional, Sequence

from smskit.routing.status import ProviderLine
from smskit.store.analytics import CampaignStats, LinkClicks, StatsReport, delivery_rate
from smskit.store.base import DayStats

__all__ = ["embed_json", "message_page", "money", "number", "percent", "render"]

_HEAD = """<!doctype html>
<html lang="pt-BR">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
{extra}<link rel="stylesheet" href="/static/dashboard.css">
</head>
"""


def number(value: int) -> str:
    """``1234567`` -> ``"1.234.567"``."""
    return f"{value:,}".replace(",", ".")


def money(value: Decimal) -> str:
    """``Decimal("1234.5")`` -> ``"R$ 1.234,50"`` (rounded half up to cents)."""
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = f"{cents:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return f"R$ {text}"


def percent(rate: Optional[float]) -> str:
    """``0.9351`` -> ``"93,5%"``; ``None`` (nothing sent) -> an en dash."""
    if rate is None:
        return "\u2013"
    return f"{rate * 100:.1f}%".replace(".", ",")


def day_label(day: dt.date) -> str:
    """``2024-05-10`` -> ``"10/05/2024"``."""
    return day.strftime("%d/%m/%Y")


def embed_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` breakout)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def message_page(title: str, detail: str) -> str:
    """A small page for errors (401, 404, 503...)."""
    return (_HEAD.format(title=escape(f"smskit · {title}"), extra="")
            + f'<body class="message"><main><h1>{escape(title)}</h1>'
            f"<p>{escape(detail)}</p></main></body>\n</html>\n")


def _card(metric: str, label: str, value: str, hint: str = "") -> str:
    title = f' title="{escape(hint)}"' if hint else ""
    return (f'<div class="card" data-metric="{metric}"{title}>'
            f'<span class="label">{escape(label)}</span>'
            f'<span class="value">{escape(value)}</span></div>')


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]],
           table_id: str, empty: str, numeric_from: int = 1) -> str:
    body = list(rows)
    if not body:
        return (f'<section id="{table_id}"><h2>{escape(caption)}</h2>'
                f'<p class="empty">{escape(empty)}</p></section>')
    head = "".join(
        f'<th scope="col"{" class=num" if i >= numeric_from else ""}>{escape(h)}</th>'
        for i, h in enumerate(headers))
    lines = []
    for row in body:
        cells = "".join(
            f'<td{" class=num" if i >= numeric_from else ""}>{cell}</td>'
            for i, cell in enumerate(row))
        lines.append(f"<tr>{cells}</tr>")
    return (f'<section id="{table_id}"><h2>{escape(caption)}</h2><div class="scroll">'
            f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
            "</div></section>")


def _volume_row(first: str, d: DayStats) -> List[str]:
    return [first, number(d.sent), number(d.delivered), number(d.failed), number(d.rejected),
            number(d.canceled), escape(percent(delivery_rate(d.delivered, d.sent))),
            escape(money(d.cost)), number(d.inbound)]


_VOLUME_HEADERS = ["Enviadas", "Entregues", "Falhas", "Recusadas", "Canceladas",
                   "Taxa de entrega", "Custo", "Respostas"]


def _campaign_row(c: CampaignStats) -> List[str]:
    name = escape(c.name) if c.name else '<span class="muted">sem nome</span>'
    return [f'{name}<br><code>{escape(c.campaign_id)}</code>', number(c.messages),
            number(c.sent), number(c.delivered), number(c.failed),
            escape(percent(c.delivery_rate)), escape(money(c.cost)), number(c.replies),
            number(c.opt_outs), number(c.clicks), number(c.clicked_messages)]


def _link_row(t: LinkClicks) -> List[str]:
    shown = t.url if len(t.url) <= 80 else t.url[:77] + "..."
    return [f'<span class="url" title="{escape(t.url)}">{escape(shown)}</span>',
            f"<code>{escape(t.code)}</code>", f"<code>{escape(t.message_id)}</code>",
            escape(t.campaign_id or "\u2013"), number(t.clicks)]


_CIRCUITS = {"closed": "normal", "open": "fora do ar", "half-open": "em teste"}


def _status_row(line: ProviderLine) -> List[str]:
    circuit = escape(_CIRCUITS.get(line.circuit, line.circuit))
    if line.circuit != "closed":
        until = line.open_until.strftime("%H:%M:%S") if line.open_until else ""
        circuit = (f'<strong class="alert" title="{escape(line.reason or "")}">{circuit}'
                   f"</strong> até {escape(until)}")
    balance = "\u2013" if line.balance is None else f"{line.balance:f}"
    if line.balance_low:
        balance = f'<strong class="alert">{escape(balance)}</strong>'
    rate = "\u2013" if line.max_per_second is None else f"{line.max_per_second:g}/s"
    held = number(line.held)
    if line.held:
        held = (f'<strong class="alert" title="smskit messages --held; smskit resolve">'
                f"{held}</strong>")
    return [escape(line.provider), circuit, number(line.queued), held, balance, escape(rate),
            number(line.moved_in), number(line.moved_out), number(line.trips)]


def render(report: StatsReport, *, generated_at: dt.datetime,
           providers: Sequence[ProviderLine] = ()) -> str:
    """The whole dashboard page for ``report`` (``providers``: one status line each)."""
    totals = report.totals
    start, end = report.start.isoformat(), report.end.isoformat()
    cards = "".join([
        _card("sent", "Enviadas", number(totals.sent), "aceitas pelo provedor"),
        _card("delivered", "Entregues", number(totals.delivered)),
        _card("failed", "Falhas", number(totals.failed), "erro ou expiradas"),
        _card("delivery_rate", "Taxa de entrega", percent(totals.delivery_rate),
              "entregues / enviadas"),
        _card("cost", "Custo", money(totals.cost)),
        _card("replies", "Respostas", number(totals.replies)),
        _card("opt_outs", "Descadastros", number(totals.opt_outs), "pediram para sair"),
        _card("clicks", "Cliques", number(totals.clicks)),
    ])
    charts = "".join(
        f'<figure class="chart"><figcaption>{escape(caption)}</figcaption>'
        f'<div class="chart-box" id="{chart_id}" role="img" aria-label="{escape(caption)}">'
        "</div></figure>"
        for chart_id, caption in [("chart-volume", "Envios por dia"),
                                  ("chart-cost", "Custo por dia e provedor (R$)"),
                                  ("chart-engagement", "Respostas, descadastros e cliques")])
    status = _table("Provedores agora", ["Provedor", "Situação", "Na fila", "Retidas", "Saldo",
                                         "Limite",
                                         "Recebidas de outro", "Passadas a outro",
                                         "Quedas"],
                    (_status_row(line) for line in providers), "provider-status",
                    "Nenhum provedor.", numeric_from=2)
    volumes = _table("Por provedor", ["Provedor", *_VOLUME_HEADERS],
                     (_volume_row(escape(p.provider or "(nenhum)"), p)
                      for p in report.providers()),
                     "providers", "Nenhuma mensagem no período.")
    campaigns = _table("Campanhas", ["Campanha", "Mensagens", "Enviadas", "Entregues", "Falhas",
                                     "Taxa de entrega", "Custo", "Respostas", "Descadastros",
                                     "Cliques", "Quem clicou"],
                       (_campaign_row(c) for c in report.campaigns),
                       "campaigns", "Nenhuma campanha no período.")
    links = _table("Links mais clicados", ["Destino", "Código", "Mensagem", "Campanha",
                                           "Cliques"],
                   (_link_row(t) for t in report.top_links), "top-links",
                   "Nenhum clique no período.", numeric_from=4)
    days = _table("Por dia", ["Dia", "Provedor", *_VOLUME_HEADERS],
                  ([escape(day_label(d.day)), *_volume_row(escape(d.provider or "(nenhum)"), d)]
                   for d in reversed(list(report.days))),
                  "days", "Nenhuma mensagem no período.", numeric_from=2)
    data = {**report.as_dict(), "provider_status": [line.as_dict() for line in providers]}
    extra = ('<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">\n'
             '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>\n'
             '<script src="/static/dashboard.js" defer></script>\n')
    return (
        _HEAD.format(title="smskit · Painel", extra=extra)
        + "<body>\n<header>"
        '<h1>smskit <span>Painel de SMS</span></h1>'
        '<form class="range" method="get" action="/dashboard">'
        f'<label>De <input type="date" name="start" value="{start}" required></label>'
        f'<label>Até <input type="date" name="end" value="{end}" required></label>'
        '<button type="submit">Atualizar</button></form>'
        f'<p class="meta">{escape(day_label(report.start))} a {escape(day_label(report.end))}'
        f" · dias em {escape(report.timezone)} · atualizado às "
        f'{escape(generated_at.strftime("%d/%m/%Y %H:%M"))} · '
        f'<a href="/api/stats?start={start}&amp;end={end}">dados em JSON</a></p>'
        "</header>\n<main>"
        f'<section class="cards" id="totals">{cards}</section>'
        f'<section class="charts">{charts}</section>'
        f"{status}{volumes}{campaigns}{links}{days}"
        "</main>\n"
        f'<script id="smskit-stats" type="application/json">{embed_json(data)}'
        "</script>\n</body>\n</html>\n"
    )
