"""``smskit campaign`` (create, start, pause, resume, cancel, status, jobs) and ``smskit contacts``
(import, list, dnd)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import click

from smskit.cli._base import (
    AppState,
    CsvSource,
    brl,
    cells,
    emit_json,
    err_console,
    local_time,
    out_console,
    parse_vars,
    parse_when,
    pass_state,
)
from smskit.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from smskit.outreach.campaigns import CampaignControl, Campaigns
    from smskit.store.outreach import Campaign, CampaignTotals, Contact

__all__ = ["COMMANDS"]

log = logging.getLogger(__name__)

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_TOTALS = ("total", "queued", "sent", "delivered", "failed", "rejected", "canceled", "replies",
           "optouts")


def _campaigns(state: AppState, campaign_id: Optional[str] = None) -> Campaigns:
    """The campaigns of the kit; with ``campaign_id``, one that must exist already."""
    from smskit.outreach.campaigns import Campaigns

    looking_for = None if campaign_id is None else f"campaign with id {campaign_id!r}"
    return Campaigns(state.kit(looking_for=looking_for))


def _campaign_json(campaign: Campaign, totals: Optional[CampaignTotals] = None) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "id": campaign.id, "name": campaign.name, "status": campaign.status,
        "template": campaign.template, "audience": campaign.audience,
        "segment": campaign.audience,  # the audience's former name, kept for scripts
        "scheduled_at": campaign.scheduled_at, "started_at": campaign.started_at,
        "finished_at": campaign.finished_at, "materialised": campaign.materialised,
        "skipped": campaign.skipped, "job_ids": list(campaign.job_ids),
        "last_error": campaign.last_error,
    }
    if totals is not None:
        data["totals"] = {name: getattr(totals, name) for name in (*_TOTALS, "cost")}
    return data


def _audience(runner: Campaigns, audience_json: Optional[str],
              options: Mapping[str, Any]) -> Dict[str, Any]:
    """The one audience the options name: a source's own options or ``--audience JSON``."""
    given = [data for data in (source.from_cli(options) for source in runner.sources.values())
             if data is not None]
    if audience_json is not None:
        try:
            data = json.loads(audience_json)
        except ValueError as exc:
            raise ValidationError(f"--audience is not JSON ({exc}): write the audience as "
                                  "data, for example '{\"type\": \"tags\", \"tags\": "
                                  "[\"vip\"]}'") from exc
        if not isinstance(data, dict):
            raise ValidationError(f"--audience must be a JSON object with a \"type\", got "
                                  f"{audience_json!r}")
        given.append(data)
    if len(given) != 1:
        ways = [_usage(source.cli_options()[0]) for source in runner.sources.values()
                if source.cli_options()] + ["--audience JSON"]
        raise click.UsageError(f"give exactly one audience: {', '.join(ways[:-1])} or "
                               f"{ways[-1]}")
    return given[0]


def _usage(option: click.Option) -> str:
    return f"{option.opts[0]} {option.metavar}" if option.metavar else option.opts[0]


class _CampaignGroup(click.Group):
    """``smskit campaign``: its ``create`` command also takes the options of every registered
    audience source (``--csv``, ``--tags``, a plugin's own), read when it is looked up."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        """The command; ``create`` with the audience sources' options added."""
        command = super().get_command(ctx, cmd_name)
        if command is not campaign_create:
            return command
        try:
            options = _source_options(ctx.ensure_object(AppState))
        except Exception as exc:  # a broken plugin must not take `campaign create` down
            log.debug("audience source options failed to load", exc_info=True)
            err_console().print(f"warning: audience options could not be loaded: {exc}",
                                style="yellow", markup=False, soft_wrap=True)
            return command
        # A copy per lookup: the options depend on the plugins these settings load.
        create = copy.copy(campaign_create)
        head = create.params[:2]  # NAME and --template first, as they always were
        create.params = [*head, *options, *create.params[2:]]
        return create


def _source_options(state: AppState) -> List[click.Parameter]:
    from smskit.outreach.audience import audience_sources
    from smskit.plugins import Plugins

    options: List[click.Parameter] = []
    seen: Dict[str, str] = {}
    for kind, source in audience_sources(Plugins(state.settings()).hook).items():
        for option in source.cli_options():
            for name in [option.name or "", *option.opts]:
                if name in seen:
                    raise ConfigurationError(f"audience type {kind!r} repeats the option "
                                             f"{name!r} of {seen[name]!r}")
                seen[name] = kind
            options.append(option)
    return options


# -- campaign ----------------------------------------------------------------------------------
@click.group(cls=_CampaignGroup)
def campaign() -> None:
    """Named sends to an audience (a CSV file, contact tags, or a plugin's source such as an
    Odoo domain), run by `smskit worker`: resumable, pausable, with live totals."""


@campaign.command("create")
@click.argument("name")
@click.option("--template", "-t", "template", required=True, help="Message template.")
@click.option("--audience", "audience_json", metavar="JSON",
              help='Audience as JSON data of any registered type '
                   '(\'{"type": "tags", "tags": ["vip"]}\').')
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template variable shared by every recipient (repeatable).")
@click.option("--at", "at", metavar="WHEN", help="Not before this moment (ISO 8601 or HH:MM).")
@click.option("--start", "start_now", is_flag=True, help="Start it right away.")
@_JSON
@pass_state
def campaign_create(state: AppState, /, name: str, template: str,
                    audience_json: Optional[str], variables: Tuple[str, ...], at: Optional[str],
                    start_now: bool, as_json: bool, **options: Any) -> None:
    """Create campaign NAME (a draft until `campaign start`) for one audience: the options of
    a source (--csv, --tags, a plugin's, such as --odoo-domain) or --audience JSON.

    \b
    Examples:
      smskit campaign create black-friday -t "Olá {{ name }}, 20% hoje!" --tags vip,sp
      smskit campaign create boletos -t "{{ nome }}, seu boleto vence hoje" --csv lista.csv
      smskit campaign create recife -t "Oi {{ name }}" \\
          --odoo-domain '[["city", "=", "Recife"], ["mobile", "!=", false]]'
    """
    when = None
    if at is not None:
        try:
            when = parse_when(at, state.settings().timezone)
        except ValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="--at") from exc
    runner = _campaigns(state)
    data = _audience(runner, audience_json, options)
    created = runner.create(name, template, data, variables=parse_vars(variables), at=when)
    if start_now:
        created = runner.start(created.id)
    if as_json:
        emit_json(_campaign_json(created))
        return
    out_console().print(f"campaign {created.id} ({created.name}): {created.status}"
                        + ("" if start_now else f"; start it with `smskit campaign start "
                                                 f"{created.id}`"), markup=False)


def _print_control(state: AppState, control: CampaignControl, as_json: bool) -> None:
    if as_json:
        emit_json({**_campaign_json(control.campaign),
                   "gateway_jobs": {str(k): v for k, v in control.jobs.items()}})
        return
    console = out_console()
    console.print(f"campaign {control.campaign.id} ({control.campaign.name}): "
                  f"{control.campaign.status}", markup=False)
    for job, answer in sorted(control.jobs.items()):
        console.print(f"  gateway job {job}: {answer}", markup=False,
                      style=None if answer == "ok" else "yellow")


@campaign.command("start")
@click.argument("campaign_id")
@_JSON
@pass_state
def campaign_start(state: AppState, campaign_id: str, as_json: bool) -> None:
    """Start a draft campaign (scheduled until its --at time); the worker sends it."""
    started = _campaigns(state, campaign_id).start(campaign_id)
    if as_json:
        emit_json(_campaign_json(started))
        return
    when = ""
    if started.status == "scheduled":
        when = f" until {local_time(started.scheduled_at, state.settings().timezone)}"
    out_console().print(f"campaign {started.id} ({started.name}): {started.status}{when}",
                        markup=False)


@campaign.command("pause")
@click.argument("campaign_id")
@_JSON
@pass_state
def campaign_pause(state: AppState, campaign_id: str, as_json: bool) -> None:
    """Hold a campaign: messages not yet handed to the gateway wait (known gateway jobs are
    paused too)."""
    _print_control(state, _campaigns(state, campaign_id).pause(campaign_id), as_json)


@campaign.command("resume")
@click.argument("campaign_id")
@_JSON
@pass_state
def campaign_resume(state: AppState, campaign_id: str, as_json: bool) -> None:
    """Release a paused campaign (known gateway jobs are played)."""
    _print_control(state, _campaigns(state, campaign_id).resume(campaign_id), as_json)


@campaign.command("cancel")
@click.argument("campaign_id")
@_JSON
@pass_state
def campaign_cancel(state: AppState, campaign_id: str, as_json: bool) -> None:
    """Stop a campaign for good: its messages not yet sent are canceled."""
    canceled = _campaigns(state, campaign_id).cancel(campaign_id)
    if as_json:
        emit_json(_campaign_json(canceled))
        return
    out_console().print(f"campaign {canceled.id} ({canceled.name}): canceled", markup=False)


@campaign.command("jobs")
@click.argument("campaign_id")
@click.argument("job_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@_JSON
@pass_state
def campaign_jobs(state: AppState, campaign_id: str, job_ids: Tuple[int, ...],
                  as_json: bool) -> None:
    """Record the gateway job ids of a campaign (Kolmeya's reports show them), so pause and
    resume also pause and play those jobs."""
    updated = _campaigns(state, campaign_id).record_jobs(campaign_id, list(job_ids))
    if as_json:
        emit_json(_campaign_json(updated))
        return
    out_console().print(f"campaign {updated.id}: gateway jobs "
                        f"{', '.join(str(j) for j in updated.job_ids)}", markup=False)


@campaign.command("status")
@click.argument("campaign_id", required=False)
@_JSON
@pass_state
def campaign_status(state: AppState, campaign_id: Optional[str], as_json: bool) -> None:
    """Live totals of one campaign, or of every campaign."""
    runner = _campaigns(state)
    items = [runner.get(campaign_id)] if campaign_id else runner.list_campaigns()
    totals = runner.totals([c.id for c in items]) if items else {}
    if as_json:
        data = [_campaign_json(c, totals[c.id]) for c in items]
        emit_json(data[0] if campaign_id else data)
        return
    from rich.table import Table

    console = out_console()
    tz = state.settings().timezone
    if campaign_id:
        (item,) = items
        count = totals[item.id]
        table = Table(title=f"campaign {item.name}", show_header=False)
        table.add_column("field")
        table.add_column("value", overflow="fold")
        rows: List[Tuple[str, Any]] = [
            ("id", item.id), ("status", item.status),
            ("audience", runner.describe(item)),
            ("scheduled", local_time(item.scheduled_at, tz)),
            ("started", local_time(item.started_at, tz)),
            ("finished", local_time(item.finished_at, tz)),
            *((name.replace("optouts", "opt-outs"), getattr(count, name)) for name in _TOTALS),
            ("cost", brl(count.cost)), ("rows without phone", item.skipped),
            ("gateway jobs", ", ".join(str(j) for j in item.job_ids) or None),
            ("last error", item.last_error)]
        for name, value in rows:
            table.add_row(*cells(name, value))
        console.print(table)
        return
    from rich import box

    table = Table(title=f"campaigns ({len(items)}); `campaign status ID` for every total",
                  box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("id", min_width=26)
    table.add_column("name", overflow="fold")
    table.add_column("status")
    for column in ("sent/total", "replies", "cost"):
        table.add_column(column, justify="right")
    for item in items:
        count = totals[item.id]
        table.add_row(*cells(item.id, item.name, item.status, f"{count.sent}/{count.total}",
                             count.replies, brl(count.cost)))
    console.print(table)
    for item in items:
        if item.last_error:
            console.print(f"note: {item.id} ({item.name}): {item.last_error}", style="yellow",
                          markup=False)


# -- contacts ----------------------------------------------------------------------------------
@click.group()
def contacts() -> None:
    """The people tags audiences reach, with their per-recipient do-not-disturb."""


def _contact_json(contact: Contact) -> Dict[str, Any]:
    return {"phone": contact.phone, "name": contact.name, "tags": list(contact.tags),
            "variables": contact.variables, "dnd_window": contact.dnd_window,
            "dnd_days": list(contact.dnd_days), "dnd_until": contact.dnd_until}


@contacts.command("import")
@click.argument("csv_file", metavar="FILE.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--phone-column", default="phone", show_default=True)
@click.option("--name-column", default="name", show_default=True)
@click.option("--tags-column", default="tags", show_default=True,
              help="Tags separated by , ; or |.")
@click.option("--tag", "tags", multiple=True, help="Add this tag to every row (repeatable).")
@click.option("--replace-tags", is_flag=True, help="Replace stored tags instead of adding.")
@click.option("--encoding", default="utf-8-sig", show_default=True)
@_JSON
@pass_state
def contacts_import(state: AppState, csv_file: Path, phone_column: str, name_column: str,
                    tags_column: str, tags: Tuple[str, ...], replace_tags: bool, encoding: str,
                    as_json: bool) -> None:
    """Insert or update contacts from a CSV (other columns become template variables;
    dnd_window, dnd_days and dnd_until columns set do-not-disturb)."""
    from smskit.outreach.contacts import import_contacts

    settings = state.settings()
    with CsvSource(csv_file, encoding=encoding) as source:
        source.require_column(phone_column)
        report = import_contacts(state.kit().store, source.rows(), phone_column=phone_column,
                                 name_column=name_column, tags_column=tags_column, tags=tags,
                                 replace_tags=replace_tags, region=settings.default_region,
                                 tz=settings.timezone)
    if as_json:
        emit_json(report)
        return
    console = out_console()
    console.print(f"{report.created} created, {report.updated} updated, {report.invalid} invalid",
                  markup=False)
    for item in report.invalid_rows:
        console.print(f"  row {item['row']}: {item['reason']}", style="yellow", markup=False)


@contacts.command("list")
@click.option("--tag", default=None, help="Only contacts with this tag.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@_JSON
@pass_state
def contacts_list(state: AppState, tag: Optional[str], limit: int, as_json: bool) -> None:
    """List contacts by phone."""
    from smskit.outreach.contacts import outreach_store

    found = outreach_store(state.kit().store, "contacts").list_contacts(tag=tag, limit=limit)
    if as_json:
        emit_json([_contact_json(c) for c in found])
        return
    from rich.table import Table

    tz = state.settings().timezone
    table = Table(title=f"contacts ({len(found)})")
    for column in ("phone", "name", "tags", "do not disturb"):
        table.add_column(column)
    for item in found:
        dnd = " ".join(x for x in (item.dnd_window, ",".join(item.dnd_days),
                                   f"until {local_time(item.dnd_until, tz)}"
                                   if item.dnd_until else "") if x)
        table.add_row(*cells(item.phone, item.name, ", ".join(item.tags), dnd or None))
    out_console().print(table)


@contacts.command("dnd")
@click.argument("phone")
@click.option("--window", metavar="HH:MM-HH:MM", help="Daily do-not-disturb window.")
@click.option("--days", metavar="DAYS", help="Whole days, comma-separated (sun,sat or dom,sab).")
@click.option("--until", "until", metavar="WHEN", help="Nothing before this moment.")
@click.option("--clear", is_flag=True, help="Remove the do-not-disturb rule.")
@_JSON
@pass_state
def contacts_dnd(state: AppState, phone: str, window: Optional[str], days: Optional[str],
                 until: Optional[str], clear: bool, as_json: bool) -> None:
    """Set (or --clear) PHONE's do-not-disturb; the contact is created if needed. Messages to
    them are deferred to the next allowed moment, never dropped."""
    import attrs

    from smskit.outreach.contacts import make_contact, outreach_store

    if clear == any(x is not None for x in (window, days, until)):
        raise click.UsageError("give --window/--days/--until, or --clear")
    settings = state.settings()
    store = outreach_store(state.kit().store, "contacts")
    fresh = make_contact(phone, region=settings.default_region, tz=settings.timezone)
    old = store.get_contacts([fresh.phone]).get(fresh.phone) or fresh
    when = parse_when(until, settings.timezone) if until else None
    rule = make_contact(
        old.phone, region=settings.default_region, tz=settings.timezone,
        dnd_window=None if clear else window,
        dnd_days=() if clear else [d.strip() for d in (days or "").split(",") if d.strip()],
        dnd_until=None if clear else when)
    updated = attrs.evolve(old, dnd_window=rule.dnd_window, dnd_days=rule.dnd_days,
                           dnd_until=rule.dnd_until, updated_at=rule.updated_at)
    store.save_contacts([updated])
    if as_json:
        emit_json(_contact_json(updated))
        return
    out_console().print(f"{updated.phone}: do-not-disturb "
                        f"{'cleared' if clear else 'set'}", markup=False)


COMMANDS = [campaign, contacts]
