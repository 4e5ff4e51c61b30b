"""How a Twilio send whose outcome is unknown is settled, as a pure function.

Twilio has no client reference on a message and no per-request lookup, so a create that timed
out is confirmed by listing the messages to that number and matching one of them. The rule
(``docs/twilio.md``, "Never sending twice"):

1. **Candidates**: the messages ``GET Messages.json?To=<phone>`` lists (also filtered by our
   ``From`` when we send from a number; no ``DateSent`` filter, which leaves out messages not
   sent yet) that are outbound, to that phone, from our sender (our ``From`` or our Messaging
   Service) and not already owned by a message we know.
2. **Window**: a candidate counts for one of our messages only if Twilio created it at or after
   the moment we persisted the message (``created_at``, or ``scheduled_at`` when later) less
   ``skew`` (clock differences between us and Twilio).
3. **Match**: the bodies are equal once both are normalised (:func:`comparable`: Unicode NFKC,
   Twilio's Smart Encoding substitutions of typographic quotes, dashes and ellipses, blanks
   collapsed).
4. Several of our messages with the same phone and body: the one sent last takes the newest
   match, and each candidate is claimed once.
5. **Undecidable** (the caller raises :class:`~smskit.errors.AmbiguousSendError`: try again
   later, never resend): a candidate in the window whose body is hidden (redacted or empty), or,
   when we know when the request was made, an unmatched candidate Twilio created within
   ``near`` of that moment (our message with a body Twilio rewrote).
6. Otherwise no match means Twilio never created the message: it gets no result, and the
   pipeline sends it again.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import AbstractSet, Callable, Dict, List, Optional, Sequence, Set

import attrs

from smskit.models import Message, SendResult, State, StatusEvent
from smskit_twilio.wire import TwilioMessage

__all__ = ["Lookup", "Match", "by_phone", "comparable", "match_sent", "owned_sids", "window_start"]

# Twilio's Smart Encoding replaces these with their GSM-7 look-alikes.
_SMART = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u200b": "",
})


def comparable(text: str) -> str:
    """``text`` as compared by the match rule: NFKC, Smart Encoding folded, blanks collapsed."""
    folded = unicodedata.normalize("NFKC", text).translate(_SMART)
    return " ".join(folded.split())


def window_start(message: Message, skew: dt.timedelta) -> dt.datetime:
    """The earliest creation time at Twilio that can belong to ``message``."""
    start = message.created_at
    if message.scheduled_at is not None and message.scheduled_at > start:
        start = message.scheduled_at
    return start - skew


@attrs.frozen
class Lookup:
    """One of our messages to settle; ``attempted_at`` is when its create was sent, when known."""

    message: Message
    attempted_at: Optional[dt.datetime] = None


@attrs.frozen
class Match:
    """The outcome: results for the messages found, their later statuses, and the reasons why
    some could not be decided (empty when everything was)."""

    results: List[SendResult] = attrs.field(factory=list)
    statuses: List[StatusEvent] = attrs.field(factory=list)
    undecided: List[str] = attrs.field(factory=list)


def _in_window(candidate: TwilioMessage, start: dt.datetime) -> bool:
    # A candidate without a creation time cannot be ruled out.
    return candidate.date_created is None or candidate.date_created >= start


def match_sent(lookups: Sequence[Lookup], candidates: Sequence[TwilioMessage], *,
               is_ours: Callable[[TwilioMessage], bool], skew: dt.timedelta,
               near: dt.timedelta, taken: AbstractSet[str] = frozenset()) -> Match:
    """Apply the rule to ``lookups`` (in send order) against listed ``candidates`` (Twilio's
    order: newest first). ``taken`` holds SIDs that belong to other messages already."""
    outcome = Match()
    claimed: Set[str] = set(taken)
    pool = [c for c in candidates if c.outbound and is_ours(c)]
    for lookup in reversed(lookups):  # the last sent takes the newest match
        message = lookup.message
        start = window_start(message, skew)
        window = [c for c in pool if c.to == message.phone and c.sid not in claimed
                  and _in_window(c, start)]
        wanted = comparable(message.body)
        same = [c for c in window if c.body is not None and comparable(c.body) == wanted]
        if same:
            found = same[0]
            claimed.add(found.sid)
            outcome.results.append(SendResult(message_id=message.id, state=State.SENT,
                                              provider_message_id=found.sid))
            if found.state.rank > State.SENT.rank:
                outcome.statuses.append(found.to_event(message.id))
            continue
        hidden = [c.sid for c in window if not c.body]
        if hidden:
            outcome.undecided.append(
                f"message {message.id}: Twilio lists {len(hidden)} message(s) to {message.phone} "
                f"in the window whose body is hidden ({', '.join(hidden[:3])})")
            continue
        if lookup.attempted_at is not None:
            close = [c.sid for c in window if c.date_created is None
                     or abs(c.date_created - lookup.attempted_at) <= near]
            if close:
                outcome.undecided.append(
                    f"message {message.id}: Twilio created {', '.join(close[:3])} to "
                    f"{message.phone} right when we sent, with another body")
    outcome.results.reverse()
    return outcome


def owned_sids(results: Sequence[SendResult]) -> Set[str]:
    """The provider ids of ``results`` (SIDs no other message may claim)."""
    return {r.provider_message_id for r in results if r.provider_message_id}


def by_phone(lookups: Sequence[Lookup]) -> Dict[str, List[Lookup]]:
    """``lookups`` grouped by phone, each group in send order."""
    grouped: Dict[str, List[Lookup]] = {}
    for lookup in lookups:
        grouped.setdefault(lookup.message.phone, []).append(lookup)
    return grouped
