"""``smskit blacklist`` (add, remove, list, import, export, audit, sync)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Tuple

import attrs
import click

from smskit.cli._base import (
    AppState,
    CsvSource,
    cells,
    emit_json,
    err_console,
    local_time,
    out_console,
    pass_state,
)
from smskit.errors import ConfigurationError, ProviderError

__all__ = ["COMMANDS"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _e164(state: AppState, raw: str) -> str:
    from smskit.phone import blacklist_e164

    return blacklist_e164(raw, state.settings().default_region)


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


@attrs.frozen
class _Change:
    """One kind of blacklist change: which kit method, and the words of its report."""

    add: bool       # kit.blacklist_add, else kit.blacklist_remove
    done: str       # JSON key and line of the numbers changed: "added" / "removed"
    other: str      # JSON key of the numbers left as they were: "already" / "absent"
    unchanged: str  # line of a number left as it was


_ADD = _Change(True, "added", "already", "already on the blacklist")
_REMOVE = _Change(False, "removed", "absent", "was not on the blacklist")


def _change(state: AppState, phones: Tuple[str, ...], reason: str, gateway: bool,
            as_json: bool, change: _Change) -> None:
    """Add or remove PHONES (all are checked first), push to the gateway if asked, report."""
    numbers = [_e164(state, raw) for raw in phones]
    kit, who = state.kit(), _who()
    apply = kit.blacklist_add if change.add else kit.blacklist_remove
    changed = [n for n in numbers if apply(n, reason=reason, source=who)]
    pushed = _gateway_blacklist(state) if gateway else None
    if as_json:
        emit_json({change.done: changed,
                   change.other: [n for n in numbers if n not in changed], "gateway": pushed})
        return
    console = out_console()
    for number in numbers:
        console.print(f"{number}: {change.done if number in changed else change.unchanged}",
                      markup=False)
    if pushed:
        console.print(f"also sent to the {pushed} blacklist", markup=False)


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
    _change(state, phones, reason, gateway, as_json, _ADD)


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
    _change(state, phones, reason, gateway, as_json, _REMOVE)


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


COMMANDS = [blacklist]
