"""``smskit send``, ``send-bulk``, ``status``, ``balance`` and ``segments``."""

from __future__ import annotations

import datetime as dt
import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import attrs
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
from smskit.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from smskit.kit import Outcome, SmsKit
    from smskit.models import Message
    from smskit.outbox import DispatchReport

__all__ = ["COMMANDS", "EXIT_NOT_SENT", "message_json", "print_message"]

#: Exit status of a send whose message is stored but not yet accepted by the gateway (queued
#: after a failed gateway call, or held while its outcome is unknown): not an error, not sent.
EXIT_NOT_SENT = 3
#: ``send-bulk`` stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_VAR = click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
                    help="A template variable (repeatable).")


def message_json(message: Message) -> Dict[str, Any]:
    """A message as the ``--json`` output of the commands shows it."""
    return {
        "id": message.id,
        "phone": message.phone,
        "state": message.state.value,
        "body": message.body,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "encoding": message.encoding,
        "segments": message.segments,
        "cost": message.cost,
        "created_at": message.created_at,
        "scheduled_at": message.scheduled_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "error_code": message.error_code,
        "error_text": message.error_text,
        "campaign_id": message.campaign_id,
        "tags": list(message.tags),
        "idempotency_key": message.idempotency_key,
        "attempts": message.attempts,
    }


def _when(state: AppState, at: Optional[str], hint: str = "--at") -> Optional[dt.datetime]:
    if at is None:
        return None
    try:
        return parse_when(at, state.settings().timezone)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


# -- send ------------------------------------------------------------------------------------
@click.command()
@click.argument("phone")
@click.argument("text")
@_VAR
@click.option("--at", "at", metavar="WHEN",
              help="Send later: ISO 8601 (2026-11-27T09:00) or HH:MM (next such time).")
@click.option("--idempotency-key", help="Send at most once per key (safe to re-run).")
@click.option("--campaign", "campaign_id", help="Campaign id stored with the message.")
@_JSON
@pass_state
def send(state: AppState, phone: str, text: str, variables: Tuple[str, ...], at: Optional[str],
         idempotency_key: Optional[str], campaign_id: Optional[str], as_json: bool) -> int:
    """Send one SMS. TEXT may use {{ placeholders }} filled by --var.

    Exit status: 0 sent (or deferred, or already stored); 1 an error, or the message was
    rejected or canceled; 3 stored but not yet accepted by the gateway (queued after a failed
    call, or held while its outcome is unknown): `smskit worker` takes it from there.

    \b
    Example:
      smskit send "(11) 98765-4321" "Olá {{ nome }}, seu pedido saiu." --var nome=Ana
    """
    when = _when(state, at)
    kit = state.kit()
    # Every provider the send may go to is built (a missing token fails) before the store
    # opens: nothing is stored for a send that cannot go out.
    providers = kit.check_providers()
    outcome = kit.send(phone, text, variables=parse_vars(variables), at=when,
                       idempotency_key=idempotency_key, campaign_id=campaign_id,
                       dispatch=False)
    report: Optional[DispatchReport] = None
    if outcome.queued and outcome.message_id:
        report = kit.dispatch_due(providers=providers, watch={outcome.message_id})
        outcome = outcome.after_dispatch(report.outcomes.get(outcome.message_id))
    message = kit.get(outcome.message_id) if outcome.message_id else None
    return _report_send(state, outcome, message, report, as_json)


def _report_send(state: AppState, outcome: Outcome, message: Optional[Message],
                 report: Optional[DispatchReport], as_json: bool) -> int:
    """Tell what became of the message; the exit status."""
    from smskit.models import State

    current = message.state if message is not None else outcome.state
    reason = (message.error_text if message is not None else None) or outcome.reason
    own = report.outcomes.get(outcome.message_id or "") if report is not None else None
    own_sent = 1 if own is not None and own.state is State.SENT else 0
    others = max(0, report.sent - own_sent) if report is not None else 0
    waiting = current is State.OUTGOING and outcome.created and outcome.deferred_until is None \
        and (outcome.held or bool(outcome.reason))
    if as_json:
        data = message_json(message) if message is not None else {"state": current.value}
        data.update(created=outcome.created, reason=reason, held=outcome.held,
                    deferred_until=outcome.deferred_until, earlier_sent=others,
                    dispatch_errors=report.errors if report is not None else [])
        emit_json(data)
    if current in (State.REJECTED, State.CANCELED, State.ERROR, State.EXPIRED):
        also = (f" ({others} message(s) queued earlier were sent in the same dispatch)"
                if others else "")
        raise ValidationError(f"message to {outcome.recipient} was {current.value}: "
                              f"{reason}{also}")
    if not as_json and message is not None:
        _print_send(state, outcome, message, current)
        if others:
            out_console().print(f"also sent {others} message(s) queued earlier",
                                markup=False)
    return EXIT_NOT_SENT if waiting else 0


def _print_send(state: AppState, outcome: Outcome, message: Message, current: Any) -> None:
    from smskit.models import State

    tz = state.settings().timezone
    console = out_console()
    cost = f"{message.segments} segment(s), {message.encoding}, {brl(message.cost)}"
    if not outcome.created:
        console.print(f"already stored under this idempotency key: {message.id} "
                      f"({current.value})", markup=False)
    elif current is State.OUTGOING and outcome.deferred_until is not None:
        console.print(f"deferred (quiet hours) {message.id} to {message.phone}: will go out at "
                      f"{local_time(outcome.deferred_until, tz)} via `smskit worker` ({cost})",
                      style="yellow", markup=False, soft_wrap=True)
    elif current is State.OUTGOING and outcome.held:
        console.print(f"held {message.id} to {message.phone}: the request may have reached "
                      f"the gateway ({outcome.reason}). smskit will not send it again by "
                      f"itself: `smskit worker` asks the gateway, or settle it with `smskit "
                      f"resolve {message.id} --sent` (or --resend) ({cost})",
                      style="yellow", markup=False, soft_wrap=True)
    elif current is State.OUTGOING and outcome.reason:
        console.print(f"queued {message.id} to {message.phone}, not sent yet: "
                      f"{outcome.reason}. `smskit worker` sends it (`smskit cancel "
                      f"{message.id}` drops it) ({cost})", style="yellow", markup=False,
                      soft_wrap=True)
    elif current is State.OUTGOING:
        console.print(f"queued {message.id} to {message.phone} for "
                      f"{local_time(message.scheduled_at, tz)}; `smskit worker` sends it "
                      f"({cost})", markup=False)
    else:
        console.print(f"{current.value} {message.id} to {message.phone} ({cost})",
                      style="green", markup=False)


# -- send-bulk -------------------------------------------------------------------------------
def _delimiter(value: Optional[str]) -> Optional[str]:
    """``--delimiter``: one character; ``tab`` or ``\\t`` as typed in a shell is a tab."""
    if value is None:
        return None
    if value.lower() in ("tab", "\\t"):
        return "\t"
    if len(value) != 1:
        raise click.BadParameter(f"expected one character (or 'tab'), got {value!r}",
                                 param_hint="--delimiter")
    return value


@click.command("send-bulk")
@click.argument("csv_file", metavar="FILE.csv",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--template", "-t", "template", required=True,
              help="Message template; CSV columns are its variables.")
@click.option("--phone-column", default="phone", show_default=True)
@click.option("--idempotency-prefix",
              help="Key messages as PREFIX:<phone> so a re-run skips numbers already stored.")
@_VAR
@click.option("--at", "at", metavar="WHEN", help="Send later (ISO 8601 or HH:MM).")
@click.option("--campaign", "campaign_id", help="Campaign id stored with every message.")
@click.option("--encoding", default="utf-8-sig", show_default=True,
              help="File encoding (cp1252 for a CSV saved by Excel in Portuguese).")
@click.option("--delimiter", default=None, callback=lambda ctx, param, value: _delimiter(value),
              help="Column separator: one character, or 'tab' (default: guessed).")
@click.option("--show", "show", default=20, show_default=True, metavar="N",
              help="List at most N rejected or canceled rows.")
@_JSON
@pass_state
def send_bulk(state: AppState, csv_file: Path, template: str, phone_column: str,
              idempotency_prefix: Optional[str], variables: Tuple[str, ...], at: Optional[str],
              campaign_id: Optional[str], encoding: str, delimiter: Optional[str], show: int,
              as_json: bool) -> int:
    """Send TEMPLATE to every row of FILE.csv (streamed: any size).

    Each row is counted once, by where its message ended. Exit status: 0 when every stored
    message was accepted (or deferred); 3 when some are stored but not yet accepted (queued
    after a failed gateway call, or held): `smskit worker` takes them from there.

    \b
    Example:
      smskit send-bulk clientes.csv --phone-column telefone \\
          --template "Olá {{ nome }}, sua fatura vence {{ vencimento }}." \\
          --idempotency-prefix fatura-2026-11
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    when = _when(state, at)
    kit = state.kit()
    kit.check_providers()  # a provider that cannot be built fails before anything is stored
    problems: List[Dict[str, Any]] = []
    hidden = 0
    console = err_console()
    show_bar = not as_json and console.is_terminal
    with CsvSource(csv_file, encoding=encoding, delimiter=delimiter) as source, Progress(
        TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        console=console, disable=not show_bar, transient=False,
    ) as progress:
        source.require_column(phone_column)
        shared = parse_vars(variables)
        rows_in = _check_columns(kit, source, template, shared, phone_column)
        task = progress.add_task("sending", total=max(source.size, 1))
        rows = 0

        def on_outcome(outcome: Outcome) -> None:
            nonlocal rows, hidden
            rows += 1
            if outcome.state.value in ("rejected", "canceled") and outcome.created:
                if len(problems) < show:
                    problems.append({"row": outcome.index + 1, "recipient": outcome.recipient,
                                     "state": outcome.state.value, "reason": outcome.reason})
                else:
                    hidden += 1
            progress.update(task, completed=source.bytes_read, description=f"{rows} rows")

        try:
            summary = kit.send_many(
                rows_in, template, variables=shared, phone_field=phone_column,
                at=when, idempotency_prefix=idempotency_prefix, campaign_id=campaign_id,
                on_outcome=on_outcome,
            )
        except KeyboardInterrupt:
            progress.stop()
            _interrupted(rows, idempotency_prefix)
            return EXIT_INTERRUPTED
        progress.update(task, completed=max(source.size, 1))
    counts = attrs.asdict(summary)
    if as_json:
        emit_json({"file": str(csv_file), "summary": counts, "rejections": problems,
                   "rejections_not_listed": hidden})
    else:
        _print_bulk(counts, problems, hidden)
    if summary.held or summary.failed_dispatch:
        if not as_json:
            err_console().print(
                f"{summary.queued} message(s) queued and {summary.held} held, not yet "
                "accepted by the gateway: `smskit worker` sends the queued ones and settles "
                "the held ones (`smskit messages --held`)", style="yellow", markup=False,
                soft_wrap=True)
        return EXIT_NOT_SENT
    return 0


def _interrupted(rows: int, prefix: Optional[str]) -> None:
    """What a Ctrl-C left: the rows done, and how to go on without sending anyone twice."""
    if prefix:
        again = (f"run the same command again (the same --idempotency-prefix {prefix}) to "
                 "go on: the rows stored already are skipped")
    else:
        again = ("without --idempotency-prefix a re-run sends every row again; to go on "
                 "without that, send the rest of the file only")
    err_console().print(
        f"interrupted after {rows} row(s) were done; messages stored for later rows (a chunk "
        f"being sent) are sent or settled by `smskit worker`; {again}",
        style="yellow", markup=False, soft_wrap=True)


def _check_columns(kit: SmsKit, source: CsvSource, template: str, shared: Dict[str, str],
                   phone_column: str) -> Iterator[Dict[str, Any]]:
    """Fail before anything is sent when the template needs a variable that neither the
    header, ``--var`` nor a ``prepare_message`` hook gives (a typo would otherwise reject
    every row), as a campaign's fit check does; the file's rows, the first one read ahead to
    ask the hooks."""
    from smskit.outreach.fit import hook_variables, required_roots
    from smskit.template import Template

    rows = source.rows()
    first = next(rows, None)
    header = set(source.fieldnames)
    missing = [name for name in required_roots(Template(template))
               if name not in shared and name not in header]
    if missing and kit.hooks.prepare_message.get_hookimpls():
        # the hooks are asked for the first row; a file without rows has no one to ask
        added = hook_variables(kit, {**shared, **first}, first.get(phone_column)) \
            if first is not None else set(missing)
        missing = [name for name in missing if name not in added]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise ValidationError(
            f"the template needs {names} but {source.path} has no column{plural} {names} "
            f"(columns: {', '.join(source.fieldnames)}), so nothing was sent: add the column, "
            f"give it with --var {missing[0]}=VALUE, or a default in the template "
            f'({{{{ {missing[0]} | default("...") }}}})')
    return itertools.chain([first] if first is not None else [], rows)


def _print_bulk(counts: Dict[str, Any], problems: List[Dict[str, Any]], hidden: int) -> None:
    from rich.table import Table

    console = out_console()
    table = Table(title="send-bulk", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    labels = (
        ("total", "rows read"), ("sent", "accepted by the gateway"),
        ("queued", "queued, not yet sent"), ("held", "held (outcome unknown)"),
        ("deferred", "deferred (later, quiet hours)"),
        ("rejected", "rejected (invalid, or refused by the gateway)"),
        ("canceled", "canceled (blacklist/policy)"),
        ("duplicates", "already stored (idempotency)"),
    )
    for key, label in labels:
        table.add_row(*cells(label, counts[key]))
    console.print(table)
    if problems:
        listing = Table(title="not sent", show_header=True)
        for name in ("row", "recipient", "state", "reason"):
            listing.add_column(name)
        for item in problems:
            listing.add_row(*cells(item["row"], item["recipient"], item["state"],
                                   item["reason"] or ""))
        console.print(listing)
        if hidden:
            console.print(f"... and {hidden} more (raise --show to list them)", markup=False)


# -- status ----------------------------------------------------------------------------------
@click.command()
@click.argument("message_id")
@click.option("--refresh", is_flag=True, help="Ask the gateway for the current status first.")
@_JSON
@pass_state
def status(state: AppState, message_id: str, refresh: bool, as_json: bool) -> None:
    """Show a message and its history."""
    kit = state.kit(looking_for=f"message with id {message_id!r}")
    message = kit.get(message_id)
    if message is None:
        raise NotFoundError(f"no message with id {message_id!r}")
    refreshed: Optional[str] = None
    if refresh:
        refreshed = _refresh(kit, message)
        message = kit.get(message_id) or message
    history = kit.history(message_id)
    if as_json:
        data = message_json(message)
        data["history"] = history
        data["refresh"] = refreshed
        emit_json(data)
        return
    print_message(state, message, history, refreshed)


def _refresh(kit: SmsKit, message: Message) -> str:
    """Settle the message with the gateway; a short note of what happened."""
    import attrs as _attrs

    from smskit.models import State

    if message.state.is_final:
        return f"already final ({message.state.value}); nothing to ask"
    provider = kit.provider(message.provider)
    if message.state is State.OUTGOING:
        report = kit.reconcile(provider=provider.name)
        return f"reconciled {report.batches} batch(es): {report.confirmed} confirmed"
    if not provider.capabilities.status_query or not message.provider_message_id:
        return f"provider {provider.name!r} cannot be asked about one message"
    event = _attrs.evolve(provider.message_status(message.provider_message_id),
                          message_id=message.id)
    outcome = kit.apply_status(event)
    return f"gateway says {event.state.value}" + ("" if outcome.applied else
                                                    f" ({outcome.reason})")


def print_message(state: AppState, message: Message, history: List[Any],
                  refreshed: Optional[str], held: Optional[str] = None) -> None:
    """A message's fields, then its history, as a person reads them (``held``: why it waits
    for reconciliation)."""
    from rich.table import Table

    tz = state.settings().timezone
    console = out_console()
    info = Table(show_header=False, box=None)
    info.add_column(style="bold")
    info.add_column()
    rows = [
        ("id", message.id), ("phone", message.phone), ("state", message.state.value),
        ("provider", f"{message.provider} {message.provider_message_id or ''}".strip()),
        ("body", message.body),
        ("segments", f"{message.segments} ({message.encoding or '-'}), {brl(message.cost)}"),
        ("created", local_time(message.created_at, tz)),
        ("scheduled", local_time(message.scheduled_at, tz)),
        ("sent", local_time(message.sent_at, tz)),
        ("delivered", local_time(message.delivered_at, tz)),
    ]
    if message.error_code or message.error_text:
        rows.append(("error", f"{message.error_code or ''} {message.error_text or ''}".strip()))
    if held:
        rows.append(("held", held))
    if refreshed:
        rows.append(("refresh", refreshed))
    for key, value in rows:
        info.add_row(*cells(key, value))
    console.print(info)
    if not history:
        console.print("no events recorded yet", markup=False)
        return
    table = Table(title="history", show_header=True)
    for name in ("when", "event", "change", "detail"):
        table.add_column(name)
    for event in history:
        change = f"{event.old_state or '-'} -> {event.new_state or '-'}"
        if not event.applied:
            change += " (ignored)"
        table.add_row(*cells(local_time(event.created_at, tz), event.kind, change,
                             event.detail))
    console.print(table)


# -- balance ---------------------------------------------------------------------------------
@click.command()
@_JSON
@pass_state
def balance(state: AppState, as_json: bool) -> None:
    """Show the gateway account's balance."""
    from smskit.errors import ConfigurationError

    provider = state.kit().provider()
    if not provider.capabilities.balance:
        raise ConfigurationError(f"provider {provider.name!r} cannot report a balance")
    amount = provider.balance()
    if as_json:
        emit_json({"provider": provider.name, "balance": amount})
    else:
        out_console().print(f"{provider.name}: {brl(amount)}", markup=False)


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


COMMANDS = [send, send_bulk, status, balance, segments]
