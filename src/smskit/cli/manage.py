"""``smskit blacklist`` (add, remove, list, import, export, audit, sync), ``schedule``,
``segments`` and ``plugins``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
from smskit.errors import (
    ConfigurationError,
    NotFoundError,
    ProviderError,
    SmsKitError,
    ValidationError,
)

__all__ = ["COMMANDS"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _e164(state: AppState, raw: str) -> str:
    from smskit.phone import Phone

    return Phone.parse(raw, state.settings().default_region, allow_landlines=True).e164


def _who() -> str:
    """``cli:<login>`` for the audit trail (``cli`` when the login is unknown)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in this environment
        return "cli"


def _gateway_blacklist(state: AppState) -> str:
    """Push the queued blacklist changes to the gateway now (the worker would do it later)."""
    from smskit.outreach.blacklist_sync import push_pending

    kit = state.kit()
    provider = kit.provider()
    if not provider.capabilities.blacklist:
        raise ConfigurationError(f"provider {provider.name!r} has no blacklist to update")
    report = push_pending(kit, provider.name)
    if report.errors:
        raise ProviderError(f"saved locally, but the {provider.name} blacklist was not updated "
                            f"({report.errors[-1]}); `smskit worker` retries it")
    return provider.name


# -- blacklist -------------------------------------------------------------------------------
@click.group()
def blacklist() -> None:
    """Numbers never to message. The local list is authoritative: every change is audited and
    pushed to the gateway's own list by `smskit worker` (--gateway: now)."""


@blacklist.command("add")
@click.argument("phones", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (kept with the entry).")
@click.option("--gateway", is_flag=True,
              help="Push to the gateway's blacklist now (else the worker does).")
@_JSON
@pass_state
def blacklist_add(state: AppState, phones: Tuple[str, ...], reason: str, gateway: bool,
                  as_json: bool) -> None:
    """Add PHONES (all are checked before any is added).

    \b
    Example:
      smskit blacklist add "(11) 98765-4321" --reason "pediu para sair"
    """
    numbers = [_e164(state, raw) for raw in phones]
    kit, who = state.kit(), _who()
    added = [n for n in numbers if kit.blacklist_add(n, reason=reason, source=who)]
    pushed = _gateway_blacklist(state) if gateway else None
    if as_json:
        emit_json({"added": added, "already": [n for n in numbers if n not in added],
                   "gateway": pushed})
        return
    console = out_console()
    for number in numbers:
        note = "added" if number in added else "already on the blacklist"
        console.print(f"{number}: {note}", markup=False)
    if pushed:
        console.print(f"also sent to the {pushed} blacklist", markup=False)


@blacklist.command("remove")
@click.argument("phones", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.option("--gateway", is_flag=True,
              help="Push to the gateway's blacklist now (else the worker does).")
@_JSON
@pass_state
def blacklist_remove(state: AppState, phones: Tuple[str, ...], reason: str, gateway: bool,
                     as_json: bool) -> None:
    """Remove PHONES from the blacklist."""
    numbers = [_e164(state, raw) for raw in phones]
    kit, who = state.kit(), _who()
    removed = [n for n in numbers if kit.blacklist_remove(n, reason=reason, source=who)]
    pushed = _gateway_blacklist(state) if gateway else None
    if as_json:
        emit_json({"removed": removed, "absent": [n for n in numbers if n not in removed],
                   "gateway": pushed})
        return
    console = out_console()
    for number in numbers:
        note = "removed" if number in removed else "was not on the blacklist"
        console.print(f"{number}: {note}", markup=False)


@blacklist.command("list")
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV (phone,reason,source,created_at).")
@_JSON
@pass_state
def blacklist_list(state: AppState, as_csv: bool, as_json: bool) -> None:
    """List the blacklist, oldest first."""
    entries = state.kit().store.list_blacklist()
    if as_json:
        emit_json(entries)
        return
    if as_csv:
        from smskit.outreach.blacklist_sync import export_blacklist

        export_blacklist(state.kit(), sys.stdout)
        return
    from rich.table import Table

    tz = state.settings().timezone
    table = Table(title=f"blacklist ({len(entries)})")
    for name in ("phone", "reason", "source", "since"):
        table.add_column(name)
    for entry in entries:
        table.add_row(*cells(entry.phone, entry.reason, entry.source,
                             local_time(entry.created_at, tz)))
    out_console().print(table)


@blacklist.command("import")
@click.argument("csv_file", metavar="FILE.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--phone-column", default="phone", show_default=True)
@click.option("--reason", default="imported", show_default=True)
@click.option("--encoding", default="utf-8-sig", show_default=True)
@click.option("--show", "show", default=20, show_default=True, metavar="N",
              help="List at most N invalid rows.")
@_JSON
@pass_state
def blacklist_import(state: AppState, csv_file: Path, phone_column: str, reason: str,
                     encoding: str, show: int, as_json: bool) -> None:
    """Add every number of a CSV column to the blacklist (streamed; bad rows are listed).

    A `reason` column (as `blacklist export` writes) wins over --reason. Each addition is
    audited as import:FILE and pushed to the gateway by the worker.
    """
    from smskit.outreach.blacklist_sync import import_blacklist

    with CsvSource(csv_file, encoding=encoding) as source:
        source.require_column(phone_column)
        report = import_blacklist(state.kit(), source.rows(), source=f"import:{csv_file.name}",
                                  phone_column=phone_column, reason=reason, show_invalid=show)
    if as_json:
        emit_json({"file": str(csv_file), "added": report.added, "already": report.already,
                   "invalid": report.invalid, "invalid_rows": report.invalid_rows})
        return
    console = out_console()
    console.print(f"{report.added} added, {report.already} already listed, "
                  f"{report.invalid} invalid", markup=False)
    for item in report.invalid_rows:
        console.print(f"  row {item['row']}: {item['reason']}", style="yellow", markup=False)


@blacklist.command("export")
@click.argument("out_file", metavar="[FILE.csv]", required=False,
                type=click.Path(dir_okay=False, writable=True, path_type=Path))
@pass_state
def blacklist_export(state: AppState, out_file: Optional[Path]) -> None:
    """Write the blacklist as CSV (phone,reason,source,created_at) to FILE or stdout; `blacklist
    import` reads it back."""
    from smskit.outreach.blacklist_sync import export_blacklist

    if out_file is None:
        export_blacklist(state.kit(), sys.stdout)
        return
    with open(out_file, "w", encoding="utf-8", newline="") as fh:
        count = export_blacklist(state.kit(), fh)
    err_console().print(f"{count} number(s) written to {out_file}", markup=False)


@blacklist.command("audit")
@click.argument("phone", required=False)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Show the last N changes.")
@_JSON
@pass_state
def blacklist_audit(state: AppState, phone: Optional[str], limit: int, as_json: bool) -> None:
    """Who or what changed the blacklist, when and why (oldest first); PHONE: one number."""
    from smskit.outreach.contacts import outreach_store

    store = outreach_store(state.kit().store, "the blacklist audit")
    entries = store.blacklist_audit(_e164(state, phone) if phone else None, limit=limit)
    if as_json:
        emit_json(entries)
        return
    from rich.table import Table

    tz = state.settings().timezone
    table = Table(title=f"blacklist audit ({len(entries)})")
    for name in ("when", "phone", "action", "source", "reason", "campaign"):
        table.add_column(name)
    for entry in entries:
        table.add_row(*cells(local_time(entry.created_at, tz), entry.phone, entry.action,
                             entry.source, entry.reason or None, entry.campaign_id))
    out_console().print(table)


@blacklist.command("sync")
@_JSON
@pass_state
def blacklist_sync_command(state: AppState, as_json: bool) -> None:
    """Push pending blacklist changes to the gateway now and show what is left."""
    from smskit.outreach.blacklist_sync import push_pending
    from smskit.outreach.contacts import outreach_store

    kit = state.kit()
    store = outreach_store(kit.store, "blacklist sync")
    report = push_pending(kit)
    backlog = store.blacklist_sync_backlog()
    if as_json:
        emit_json({"provider": kit.provider().name, "report": report, "pending": backlog})
        return
    console = out_console()
    console.print(f"{report.acknowledged} acknowledged, {report.refused} refused, "
                  f"{report.skipped} skipped, {report.failed} to retry", markup=False)
    for error in report.errors:
        console.print(f"error: {error}", style="yellow", markup=False)
    for provider, count in sorted(backlog.items()):
        console.print(f"{provider}: {count} pending", markup=False)


# -- schedule --------------------------------------------------------------------------------
@click.group()
def schedule() -> None:
    """One-shot and recurring sends (run by `smskit worker`)."""


def _schedule_json(item: Any) -> Dict[str, Any]:
    return {"id": item.id, "name": item.name, "next_run_at": item.next_run_at,
            "rrule": item.rrule, "timezone": item.timezone, "active": item.active,
            "runs": item.runs, "last_run_at": item.last_run_at, "request": item.request}


@schedule.command("add")
@click.argument("name")
@click.option("--text", "text", required=True, help="Message template.")
@click.option("--to", "to", multiple=True, required=True, metavar="PHONE",
              help="A recipient (repeatable).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template variable (repeatable).")
@click.option("--at", "at", metavar="WHEN", help="Once, at ISO 8601 or HH:MM.")
@click.option("--rrule", help='Recurring, RFC 5545: "FREQ=DAILY;BYHOUR=9;BYMINUTE=0".')
@click.option("--tz", "tz", default=None, help="Time zone (default: the configured one).")
@_JSON
@pass_state
def schedule_add(state: AppState, name: str, text: str, to: Tuple[str, ...],
                 variables: Tuple[str, ...], at: Optional[str], rrule: Optional[str],
                 tz: Optional[str], as_json: bool) -> None:
    """Schedule a send NAME, once (--at) or recurring (--rrule).

    \b
    Example:
      smskit schedule add lembrete --text "Bom dia {{ nome }}!" --var nome=Ana \\
          --to 11987654321 --rrule "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
    """
    from smskit.outreach.scheduler import add_schedule

    if (at is None) == (rrule is None):
        raise click.UsageError("give exactly one of --at (once) or --rrule (recurring)")
    zone_name = tz or state.settings().timezone
    when = None
    if at is not None:
        try:
            when = parse_when(at, zone_name)
        except ValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="--at") from exc
    request = {"text": text, "recipients": list(to), "variables": parse_vars(variables)}
    created = add_schedule(state.kit(), name, request, at=when, rrule=rrule, tz=zone_name)
    if as_json:
        emit_json(_schedule_json(created))
        return
    out_console().print(f"schedule {created.id} ({created.name}): next run "
                        f"{local_time(created.next_run_at, created.timezone)}", markup=False)


@schedule.command("list")
@click.option("--active", "active_only", is_flag=True, help="Only active schedules.")
@_JSON
@pass_state
def schedule_list(state: AppState, active_only: bool, as_json: bool) -> None:
    """List schedules by next run."""
    items = state.kit().store.list_schedules(active_only=active_only)
    if as_json:
        emit_json([_schedule_json(item) for item in items])
        return
    from rich.table import Table

    table = Table(title=f"schedules ({len(items)})")
    table.add_column("id", no_wrap=True)
    for column in ("name", "next run", "rule", "runs"):
        table.add_column(column, overflow="fold" if column == "rule" else "ellipsis")
    for item in items:
        name = item.name if item.active else f"{item.name} (inactive)"
        table.add_row(*cells(item.id, name, local_time(item.next_run_at, item.timezone),
                             item.rrule or "once", item.runs))
    out_console().print(table)


@schedule.command("remove")
@click.argument("schedule_id")
@_JSON
@pass_state
def schedule_remove(state: AppState, schedule_id: str, as_json: bool) -> None:
    """Delete a schedule (messages it already created are kept)."""
    if not state.kit().store.remove_schedule(schedule_id):
        raise NotFoundError(f"no schedule with id {schedule_id!r}")
    if as_json:
        emit_json({"removed": schedule_id})
    else:
        out_console().print(f"schedule {schedule_id} removed", markup=False)


@schedule.command("run")
@_JSON
@pass_state
def schedule_run(state: AppState, as_json: bool) -> None:
    """Materialise every due occurrence now (exactly once; `smskit worker` also does this)."""
    from smskit.outreach.scheduler import run_due

    runs = run_due(state.kit())
    if as_json:
        emit_json(runs)
        return
    console = out_console()
    if not runs:
        console.print("nothing due", markup=False)
    for run in runs:
        console.print(f"{run.name} @ {local_time(run.occurrence, state.settings().timezone)}: "
                      f"{run.created} message(s) queued, {run.rejected} rejected, "
                      f"{run.canceled} canceled" + (f"; error: {run.error}" if run.error else ""),
                      markup=False)


# -- segments --------------------------------------------------------------------------------
@click.command()
@click.argument("text")
@click.option("--transliterate", "-t", "translit", is_flag=True,
              help="Also show the GSM-7 look-alike text and the segments it saves.")
@_JSON
@pass_state
def segments(state: AppState, text: str, translit: bool, as_json: bool) -> None:
    """Count encoding, segments and cost of TEXT ("-" reads stdin).

    \b
    Example:
      smskit segments "Olá, sua fatura vence amanhã" --transliterate
    """
    from smskit.segments import count_segments, transliterate

    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    price = state.settings().price_per_segment
    info = count_segments(text)
    data: Dict[str, Any] = {
        "encoding": info.encoding, "segments": info.segments, "characters": info.characters,
        "code_units": info.code_units, "non_gsm_characters": list(info.non_gsm_characters),
        "price_per_segment": price, "cost": info.cost(price),
    }
    result = transliterate(text) if translit else None
    if result is not None:
        after = count_segments(result.text)
        data["transliteration"] = {
            "text": result.text, "changes": [list(c) for c in result.changes],
            "segments_before": result.segments_before, "segments_after": result.segments_after,
            "saved": result.saved, "encoding": after.encoding, "cost": after.cost(price)}
    if as_json:
        emit_json(data)
        return
    console = out_console()
    console.print(f"{info.encoding}, {info.segments} segment(s), {info.characters} characters "
                  f"({info.code_units} code units), {brl(data['cost'])}", markup=False)
    if info.non_gsm_characters:
        console.print("not in GSM-7: " + " ".join(info.non_gsm_characters), markup=False)
    if result is not None:
        changes = ", ".join(f"{a}->{b} x{n}" for a, b, n in result.changes) or "none"
        console.print(f"transliterated: {result.text}", markup=False)
        console.print(f"changes: {changes}; {result.segments_before} -> "
                      f"{result.segments_after} segment(s), saves {result.saved}", markup=False)


# -- plugins ---------------------------------------------------------------------------------
@click.command()
@_JSON
@pass_state
def plugins(state: AppState, as_json: bool) -> None:
    """Which plugins loaded, which are disabled, and how to fix the ones that failed."""
    from smskit.plugins import Plugins

    manager = Plugins(state.settings())
    report = manager.report()
    problems: List[str] = []
    providers: List[str] = []
    stores: List[str] = []
    try:
        providers = sorted(manager.providers())
        stores = sorted(manager.stores())
    except SmsKitError as exc:
        problems.append(str(exc))
    if as_json:
        emit_json({"plugins": report, "providers": providers, "stores": stores,
                   "problems": problems})
        return
    from rich.table import Table

    table = Table(title="plugins")
    for column in ("name", "status", "distribution", "module", "detail / fix"):
        table.add_column(column)
    from rich.text import Text

    styles = {"loaded": "green", "disabled": "yellow", "failed": "red"}
    for item in report:
        detail = item.detail + (f"; fix: {item.fix}" if item.fix else "")
        table.add_row(*cells(item.name, Text(item.status, style=styles.get(item.status, "")),
                             item.distribution, item.module, detail))
    console = out_console()
    console.print(table)
    console.print(f"providers: {', '.join(providers) or 'none'}", markup=False)
    console.print(f"stores: {', '.join(stores) or 'none'}", markup=False)
    for problem in problems:
        console.print(f"problem: {problem}", style="red", markup=False)


COMMANDS = [blacklist, schedule, segments, plugins]
