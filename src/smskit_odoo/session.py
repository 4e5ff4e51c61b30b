"""One Odoo database as smskit uses it: the adapter, the detected schema, the sidecar journal,
the partner directory, the ``phone.blacklist`` cache, chatter notes, and the journal's replay.

Writes to Odoo that must not be lost go through the journal: an op is recorded in the sidecar,
then :meth:`OdooSession.flush` leases the pending ops and writes them in batches, kind by kind
(``mirror`` first, then ``note``, ``blacklist``, ``acrux``), each kind by a handler registered by
whoever owns it (the store, the ChatRoom router). What happens to an op:

* written: removed (or kept as done, its key guarding against a repeat);
* Odoo unreachable: it stays pending and the next flush (the next write, the worker's next
  cycle, or an explicit ``flush()``) writes it;
* a concurrent transaction got in the way (:class:`~smskit_odoo.errors.OdooTransientError`:
  a serialization failure, a deadlock, ChatRoom creating the same conversation): the batch is
  tried again at once in a fresh transaction (up to ``transient_retries`` times, logged), and
  if that keeps failing it stays pending with its attempts and last error counted: never
  given up;
* something to fix on the Odoo side (a missing ChatRoom connector: a ``ConfigurationError``):
  it stays pending, the reason recorded and logged, until the next flush after the fix;
* a record Odoo refuses: given up with its error reported (the other records are written).
"""

from __future__ import annotations

import html
import logging
import random
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

import attrs

from smskit.errors import ConfigurationError, InvalidPhoneError
from smskit.phone import Phone
from smskit_odoo.adapter import OdooAdapter, fresh_transaction
from smskit_odoo.errors import (
    OdooError,
    OdooTransientError,
    OdooUnavailableError,
    OdooValidationError,
)
from smskit_odoo.journal import Journal, Op
from smskit_odoo.partners import PartnerDirectory
from smskit_odoo.schema import OdooSchema, detect_schema

__all__ = ["FlushReport", "HandlerResult", "OdooSession", "isolate", "note_html"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Handler = Callable[[List[Op]], "HandlerResult"]

#: The order in which kinds of pending writes are replayed.
KIND_ORDER = ("mirror", "note", "blacklist", "acrux")
#: Ops leased and written per handler call.
_BATCH = 2000


@attrs.define
class HandlerResult:
    """What a handler did with its ops: ``done`` are removed, ``keep`` stay as done (their
    key guards against a repeat), ``failed`` were refused by Odoo (op id -> error)."""

    done: List[int] = attrs.field(factory=list)
    keep: List[int] = attrs.field(factory=list)
    failed: Dict[int, str] = attrs.field(factory=dict)


@attrs.define
class FlushReport:
    """What one :meth:`OdooSession.flush` wrote."""

    written: int = 0
    failed: int = 0
    pending: int = 0
    error: Optional[str] = None


def note_html(text: str) -> str:
    """Chatter bodies are HTML: the text escaped, line breaks kept."""
    return html.escape(text).replace("\n", "<br/>")


def isolate(items: Sequence[T], call: Callable[[Sequence[T]], Sequence[R]]
            ) -> Tuple[List[Tuple[T, R]], List[Tuple[T, str]]]:
    """Run ``call`` on all ``items``; when Odoo refuses the batch, split it until the refused
    records are alone. Returns ``(item, result)`` pairs and ``(item, error)`` pairs."""
    if not items:
        return [], []
    try:
        return list(zip(items, call(items))), []
    except OdooValidationError as exc:
        if len(items) == 1:
            return [], [(items[0], exc.odoo_message or str(exc))]
    middle = len(items) // 2
    ok_a, bad_a = isolate(items[:middle], call)
    ok_b, bad_b = isolate(items[middle:], call)
    return ok_a + ok_b, bad_a + bad_b


class OdooSession:
    """Everything smskit knows about one Odoo database, shared by the store and the plugins.

    ``flush_mode`` is ``sync`` (each write is replayed to Odoo before the call returns) or
    ``deferred`` (writes within ``flush_delay`` seconds are written together by a timer).
    """

    def __init__(self, adapter: OdooAdapter, journal: Journal, *, region: str = "BR",
                 model: Optional[str] = None, id_field: Optional[str] = None,
                 flush_mode: str = "sync", flush_delay: float = 0.2,
                 blacklist_ttl: float = 60.0, retry_after: float = 5.0,
                 transient_retries: int = 5) -> None:
        if flush_mode not in ("sync", "deferred"):
            raise ValueError(f"flush_mode must be 'sync' or 'deferred', got {flush_mode!r}")
        self.adapter = adapter
        self.journal = journal
        self.region = region
        self.partners = PartnerDirectory(adapter, journal, region=region)
        self.flush_mode = flush_mode
        self.flush_delay = flush_delay
        self.blacklist_ttl = blacklist_ttl
        self.retry_after = retry_after
        self.transient_retries = transient_retries
        #: Who leases journal ops for this session (unique per session and process).
        self.owner = uuid.uuid4().hex
        self._model = model
        self._id_field = id_field
        self._schema: Optional[OdooSchema] = None
        self._lock = threading.RLock()
        self._flushing = threading.Lock()
        self._handlers: Dict[str, Handler] = {"note": self._post_notes,
                                              "blacklist": self._write_blacklist}
        self._failure_listeners: List[Callable[[Op, str], None]] = []
        self._down_until = 0.0
        self._timer: Optional[threading.Timer] = None
        self._blacklist: Optional[Tuple[float, Set[str]]] = None
        self._author: Optional[int] = None

    def __repr__(self) -> str:
        return f"OdooSession({self.adapter!r})"

    # -- schema -----------------------------------------------------------------------------
    @property
    def schema(self) -> OdooSchema:
        """The detected schema (detected on first use; raises while Odoo is unreachable)."""
        with self._lock:
            if self._schema is None:
                self._schema = detect_schema(self.adapter, model=self._model,
                                             id_field=self._id_field)
                log.info("%s", self._schema.describe())
            return self._schema

    # -- handlers and replay ----------------------------------------------------------------------
    def register(self, kind: str, handler: Handler) -> None:
        """Handle pending ops of ``kind`` (one handler per kind)."""
        self._handlers[kind] = handler

    def on_failure(self, listener: Callable[[Op, str], None]) -> None:
        """Be told of each op Odoo refused (the store records it in the message history)."""
        self._failure_listeners.append(listener)

    def request_flush(self) -> None:
        """After new ops: flush now (``sync``) or soon (``deferred``); never raises."""
        if self.flush_mode == "sync":
            self.flush()
            return
        with self._lock:
            if self._timer is None or not self._timer.is_alive():
                self._timer = threading.Timer(self.flush_delay, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self, *, kinds: Optional[Sequence[str]] = None, force: bool = False,
              raise_errors: bool = False) -> FlushReport:
        """Write pending ops to Odoo, kind by kind. While Odoo was found down less than
        ``retry_after`` seconds ago nothing is tried (unless ``force``). With
        ``raise_errors`` an unreachable or refusing Odoo raises instead of being reported."""
        report = FlushReport()
        if not force and time.monotonic() < self._down_until:
            report.pending = self.journal.count()
            report.error = "Odoo was unreachable a moment ago; writes kept for later"
            return report
        with self._flushing:
            for kind in [k for k in KIND_ORDER if k in self._handlers] + sorted(
                    k for k in self._handlers if k not in KIND_ORDER):
                if kinds is not None and kind not in kinds:
                    continue
                try:
                    self._flush_kind(kind, report)
                except OdooError as exc:
                    report.error = str(exc)
                    if isinstance(exc, OdooUnavailableError):
                        self._down_until = time.monotonic() + self.retry_after
                    if not isinstance(exc, OdooTransientError):  # that one said so already
                        log.warning("Odoo writes kept for later (%s): %s", kind, exc)
                    if raise_errors:
                        raise
                    break
            report.pending = self.journal.count()
        return report

    def _flush_kind(self, kind: str, report: FlushReport) -> None:
        handler = self._handlers[kind]
        while True:
            batch = self.journal.lease([kind], self.owner, limit=_BATCH)
            if not batch:
                return
            versions = {op.id: op.version for op in batch}
            try:
                result = self._run(kind, handler, batch)
            except (OdooError, ConfigurationError) as exc:
                # never given up here: the ops stay pending, the attempt and reason recorded
                self.journal.attempt([op.id for op in batch], str(exc))
                if isinstance(exc, ConfigurationError):
                    log.warning("Odoo %s writes kept until this is fixed: %s", kind, exc)
                    report.error = str(exc)
                    return  # the other kinds are not concerned
                raise
            except BaseException:
                self.journal.attempt([op.id for op in batch], "interrupted")
                raise
            self._down_until = 0.0
            self.journal.finish(result.done, keep=result.keep, versions=versions)
            report.written += len(result.done) + len(result.keep)
            by_id = {op.id: op for op in batch}
            if result.failed:
                self.journal.attempt(list(result.failed), "; ".join(
                    sorted(set(result.failed.values())))[:2000], give_up=True,
                    versions=versions)
            for op_id, error in result.failed.items():
                report.failed += 1
                for listener in self._failure_listeners:
                    try:
                        listener(by_id[op_id], error)
                    except Exception:  # a listener must not stop the replay
                        log.exception("reporting a refused Odoo write failed")
            handled = set(result.done) | set(result.keep) | set(result.failed)
            if not handled or len(batch) < _BATCH:
                return

    def _run(self, kind: str, handler: Handler, batch: List[Op]) -> HandlerResult:
        """The handler on ``batch``, tried again in a fresh transaction after a concurrent
        transaction got in the way (the handlers read before they write, so a retry redoes
        the whole read-then-write on what is committed now)."""
        attempt = 1
        while True:
            try:
                return handler(batch)
            except OdooTransientError as exc:
                if attempt >= self.transient_retries or not fresh_transaction(self.adapter):
                    log.warning("Odoo %s writes of %d op(s) kept for a later try after %d "
                                "attempt(s): %s", kind, len(batch), attempt, exc)
                    raise
                attempt += 1
                log.info("Odoo %s writes: %s; trying again in a fresh transaction (%d/%d)",
                         kind, exc, attempt, self.transient_retries)
                time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter

    def close(self) -> None:
        """Stop a pending timer and release the connection and the journal."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.adapter.close()
        self.journal.close()

    # -- chatter notes -------------------------------------------------------------------------
    def _author_id(self) -> Any:
        if self._author is None:
            rows: List[Dict[str, Any]] = self.adapter.execute(
                "res.users", "read", [self.adapter.uid], ["partner_id"])
            partner = rows[0].get("partner_id") if rows else None
            self._author = int(partner[0]) if isinstance(partner, list) and partner else 0
        return self._author or False

    def _post_notes(self, ops: List[Op]) -> HandlerResult:
        """Notes on partners: ``message_post`` for one, one ``mail.message`` create for many
        (the same values ``message_post`` gives: comment, ``mail.mt_note``, author)."""
        result = HandlerResult()
        postable = [op for op in ops if op.payload.get("partner_id")]
        result.keep.extend(op.id for op in ops if not op.payload.get("partner_id"))
        if len(postable) == 1:
            op = postable[0]
            try:
                self.adapter.execute("res.partner", "message_post", [op.payload["partner_id"]],
                                     body=note_html(str(op.payload["text"])),
                                     message_type="comment", subtype_xmlid="mail.mt_note")
                result.keep.append(op.id)
            except OdooValidationError as exc:
                result.failed[op.id] = exc.odoo_message or str(exc)
            return result
        if not postable:
            return result
        subtype = self.schema.note_subtype_id
        author = self._author_id()

        def create(batch: Sequence[Op]) -> Sequence[Any]:
            return list(self.adapter.execute("mail.message", "create", [
                {"model": "res.partner", "res_id": op.payload["partner_id"],
                 "body": note_html(str(op.payload["text"])), "message_type": "comment",
                 "subtype_id": subtype or False, "author_id": author} for op in batch]))

        ok, bad = isolate(postable, create)
        result.keep.extend(op.id for op, _ in ok)
        result.failed.update({op.id: error for op, error in bad})
        return result

    def user_partner_id(self) -> Optional[int]:
        """The partner of the Odoo user smskit connects as (where operator notes go)."""
        author = self._author_id()
        return int(author) if author else None

    def note(self, message_id: str, event: str, partner_id: Optional[int], text: str) -> bool:
        """Queue one chatter note for ``(message_id, event)``: ``False`` if one already was."""
        if not partner_id:
            return False
        return self.journal.enqueue("note", {"partner_id": partner_id, "text": text},
                                    key=f"note:{message_id}:{event}", message_id=message_id)

    # -- phone.blacklist ------------------------------------------------------------------------
    def _normalise(self, raw: Any) -> Optional[str]:
        try:
            return Phone.parse(raw, self.region, allow_landlines=True).e164
        except InvalidPhoneError:
            return None

    def odoo_blacklist(self) -> Set[str]:
        """Every active ``phone.blacklist`` number (E.164), cached ``blacklist_ttl`` seconds."""
        if not self.schema.has_blacklist:
            return set()
        with self._lock:
            cached = self._blacklist
            if cached is not None and time.monotonic() - cached[0] < self.blacklist_ttl:
                return cached[1]
        rows = self.adapter.execute("phone.blacklist", "search_read", [], fields=["number"])
        numbers = {n for n in (self._normalise(r.get("number")) for r in rows) if n}
        with self._lock:
            self._blacklist = (time.monotonic(), numbers)
        return numbers

    def odoo_blacklisted(self, phones: Sequence[str]) -> Set[str]:
        """The subset of ``phones`` on ``phone.blacklist`` now (one fresh query)."""
        if not phones or not self.schema.has_blacklist:
            return set()
        candidates = {p: p for p in phones}
        rows = self.adapter.execute("phone.blacklist", "search_read",
                                    [("number", "in", sorted(candidates))], fields=["number"])
        return {n for n in (self._normalise(r.get("number")) for r in rows) if n in candidates}

    def forget_blacklist(self) -> None:
        """Drop the cached list (after a change)."""
        with self._lock:
            self._blacklist = None

    def _write_blacklist(self, ops: List[Op]) -> HandlerResult:
        """Mirror smskit's blacklist changes into ``phone.blacklist``: add (an archived row is
        reactivated: Odoo's ``create`` would hand it back still archived), or archive. Written
        with the context ``smskit_blacklist_sync`` so an addon mirroring Odoo's changes into
        smskit does not echo them back."""
        result = HandlerResult()
        if not self.schema.has_blacklist:
            result.done.extend(op.id for op in ops)
            return result
        latest: Dict[str, Op] = {}
        for op in ops:  # only the last change of a number counts
            latest[str(op.payload["phone"])] = op
        add = [p for p, op in latest.items() if op.payload.get("active")]
        remove = [p for p, op in latest.items() if not op.payload.get("active")]
        context = {"smskit_blacklist_sync": True, "active_test": False}
        execute = self.adapter.execute
        if add:
            rows = execute("phone.blacklist", "search_read", [("number", "in", add)],
                           fields=["number", "active"], context=context)
            archived = [int(r["id"]) for r in rows if not r.get("active")]
            if archived:
                execute("phone.blacklist", "write", archived, {"active": True},
                        context=context)
            present = {self._normalise(r.get("number")) for r in rows}
            new = [p for p in add if p not in present]
            _, bad = isolate(new, lambda batch: execute(
                "phone.blacklist", "create", [{"number": p} for p in batch], context=context))
            for phone, error in bad:
                result.failed[latest[phone].id] = error
        if remove:
            ids = execute("phone.blacklist", "search", [("number", "in", remove),
                                                        ("active", "=", True)])
            if ids:
                execute("phone.blacklist", "write", ids, {"active": False}, context=context)
        failed = set(result.failed)
        result.done.extend(op.id for op in ops if op.id not in failed)
        self.forget_blacklist()
        return result
