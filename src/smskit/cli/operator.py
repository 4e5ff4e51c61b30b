"""``smskit messages``, ``cancel`` and ``resolve``: what an operator looks at and decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import click

from smskit.cli._base import (
    AppState,
    cells,
    emit_json,
    local_time,
    out_console,
    pass_state,
)
from smskit.cli.messaging import message_json, print_message
from smskit.errors import NotFoundError, ValidationError
from smskit.models import State

if TYPE_CHECKING:
    from smskit.kit import SmsKit
    from smskit.outbox import HeldBatch

__all__ = ["COMMANDS"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_STATES = [s.value for s in State]


def _held_by_message(kit: SmsKit) -> Dict[str, HeldBatch]:
    return {mid: batch for batch in kit.held() for mid in batch.message_ids}


def _held_note(batch: HeldBatch) -> str:
    what = "held" if batch.held else "waiting for reconciliation"
    return f"{what} in batch {batch.id}: {batch.reason}"


# -- messages ---------------------------------------------------------------------------------
@click.command()
@click.argument("message_id", required=False)
@click.option("--state", "state_name", type=click.Choice(_STATES),
              help="Only messages in this state.")
@click.option("--phone", help="Only messages to or from this number.")
@click.option("--campaign", "campaign_id", help="Only messages of this campaign.")
@click.option("--held", "held_only", is_flag=True,
              help="Only messages whose outcome is unknown (held, or waiting to be reconciled).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@_JSON
@pass_state
def messages(state: AppState, message_id: Optional[str], state_name: Optional[str],
             phone: Optional[str], campaign_id: Optional[str], held_only: bool, limit: int,
             as_json: bool) -> None:
    """List messages, newest first (filtered), or show one MESSAGE_ID with its history.

    \b
    Examples:
      smskit messages --state outgoing
      smskit messages --held
      smskit messages 01JD2Z6Q8W3K5T7Y9B1C3E5G7H
    """
    kit = state.kit(looking_for="messages")
    held = _held_by_message(kit)
    if message_id is not None:
        _show(state, kit, message_id, held.get(message_id), as_json)
        return
    if held_only:
        _list_held(state, kit, as_json)
        return
    found = kit.store.list_messages(state=State(state_name) if state_name else None,
                                    phone=_phone(state, phone), campaign_id=campaign_id,
                                    limit=limit)
    if as_json:
        emit_json([{**message_json(m), "held": _held_json(held.get(m.id))} for m in found])
        return
    _print_list(state, found, held)


def _phone(state: AppState, phone: Optional[str]) -> Optional[str]:
    if phone is None:
        return None
    from smskit.phone import Phone

    try:
        return Phone.parse(phone, state.settings().default_region, allow_landlines=True).e164
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--phone") from exc


def _held_json(batch: Optional[HeldBatch]) -> Optional[Dict[str, Any]]:
    if batch is None:
        return None
    return {"batch_id": batch.id, "held": batch.held, "reason": batch.reason,
            "since": batch.since}


def _show(state: AppState, kit: SmsKit, message_id: str, batch: Optional[HeldBatch],
          as_json: bool) -> None:
    message = kit.get(message_id)
    if message is None:
        raise NotFoundError(f"no message with id {message_id!r}")
    history = kit.history(message_id)
    if as_json:
        emit_json({**message_json(message), "history": history, "held": _held_json(batch)})
        return
    note = None
    if batch is not None:
        note = (f"{_held_note(batch)}; `smskit resolve {message_id} --sent` if the gateway "
                "has it, --resend if it does not")
    print_message(state, message, history, None, held=note)


def _print_list(state: AppState, found: List[Any], held: Dict[str, HeldBatch]) -> None:
    from rich.table import Table

    tz = state.settings().timezone
    console = out_console()
    if not found:
        console.print("no messages", markup=False)
        return
    table = Table(show_header=True)
    for name in ("id", "created", "phone", "state", "provider", "campaign", "note"):
        table.add_column(name)
    for message in found:
        batch = held.get(message.id)
        shown = message.state.value + (" (held)" if batch is not None else "")
        note = _held_note(batch) if batch is not None else (message.error_text or "")
        table.add_row(*cells(message.id, local_time(message.created_at, tz), message.phone,
                             shown, message.provider or "", message.campaign_id or "", note))
    console.print(table)


def _list_held(state: AppState, kit: SmsKit, as_json: bool) -> None:
    from rich.table import Table

    batches = kit.held()
    if as_json:
        emit_json([{"batch_id": b.id, "provider": b.provider, "held": b.held,
                    "since": b.since, "reason": b.reason, "message_ids": list(b.message_ids)}
                   for b in batches])
        return
    console = out_console()
    if not batches:
        console.print("no message is held: every send's outcome is known", markup=False)
        return
    tz = state.settings().timezone
    table = Table(title="messages whose outcome is unknown", show_header=True)
    for name in ("batch", "provider", "since", "messages", "why"):
        table.add_column(name)
    for batch in batches:
        why = batch.reason if batch.held else f"(not asked yet) {batch.reason}"
        table.add_row(*cells(batch.id, batch.provider, local_time(batch.since, tz),
                             len(batch.message_ids), why))
    console.print(table)
    console.print("settle one with `smskit resolve BATCH_OR_MESSAGE --sent` (the gateway has "
                  "it) or `--resend` (it does not); `smskit messages ID` shows a message",
                  markup=False)


# -- cancel -----------------------------------------------------------------------------------
@click.command()
@click.argument("message_ids", nargs=-1, required=True, metavar="MESSAGE_ID...")
@click.option("--reason", default="canceled by the operator", show_default=True)
@_JSON
@pass_state
def cancel(state: AppState, message_ids: Tuple[str, ...], reason: str, as_json: bool) -> None:
    """Cancel queued messages (not yet handed to the gateway).

    A message already in a request cannot be canceled: if its outcome is unknown, settle it
    with `smskit resolve`.
    """
    kit = state.kit(looking_for="messages")
    held = _held_by_message(kit)
    done: List[str] = []
    refused: List[str] = []
    for message_id in message_ids:
        if kit.cancel(message_id, reason) is not None:
            done.append(message_id)
            continue
        current = kit.get(message_id)
        why = current.state.value if current is not None else "unknown"
        if message_id in held:
            why += ", held: use `smskit resolve`"
        elif current is not None and current.state is State.OUTGOING:
            why += ", being sent right now"
        refused.append(f"{message_id} ({why})")
    if as_json:
        emit_json({"canceled": done, "refused": refused})
    else:
        for message_id in done:
            out_console().print(f"canceled {message_id}", markup=False)
    if refused:
        raise ValidationError(f"too late to cancel {len(refused)} message(s): "
                              + "; ".join(refused))


# -- resolve ----------------------------------------------------------------------------------
@click.command()
@click.argument("target", metavar="BATCH_OR_MESSAGE")
@click.option("--sent", "decision", flag_value="sent",
              help="The gateway has it: mark it sent (never sent again).")
@click.option("--resend", "decision", flag_value="resend",
              help="The gateway never got it: put it back in the queue to be sent again.")
@_JSON
@pass_state
def resolve(state: AppState, target: str, decision: Optional[str], as_json: bool) -> None:
    """Settle a held batch, or one message of it, by hand.

    Check the gateway's panel first: --sent if the message is there, --resend if it is not.

    \b
    Example:
      smskit messages --held
      smskit resolve 01JD2Z6Q8V0000000000000000 --sent
    """
    if decision is None:
        raise click.UsageError("say what the gateway did: --sent or --resend")
    kit = state.kit(looking_for=f"batch or message {target!r}")
    ids = kit.resolve(target, sent=decision == "sent", who="by the operator")
    if as_json:
        emit_json({"resolved": ids, "decision": decision})
        return
    if decision == "sent":
        out_console().print(f"marked sent: {len(ids)} message(s)", markup=False)
    else:
        out_console().print(f"back in the queue: {len(ids)} message(s); `smskit worker` "
                            "sends them", markup=False)


COMMANDS = [messages, cancel, resolve]
