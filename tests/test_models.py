"""The forward-only state machine and the value objects."""

from __future__ import annotations

import datetime as dt
import os
import threading
from typing import List

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smskit import ids
from smskit.ids import new_id
from smskit.models import Message, State, StatusEvent, apply_status

FINAL = [s for s in State if s.is_final]


def event(state: State, **kw: object) -> StatusEvent:
    return StatusEvent(provider="loopback", state=state, **kw)  # type: ignore[arg-type]


def msg(state: State = State.OUTGOING) -> Message:
    return Message(phone="+5511987654321", body="Olá", state=state)


def test_states_are_ordered_forward_only() -> None:
    assert State.DRAFT.rank < State.OUTGOING.rank < State.SENT.rank < State.DELIVERED.rank
    assert {s for s in State if s.is_final} == {
        State.DELIVERED, State.ERROR, State.EXPIRED, State.REJECTED, State.CANCELED}
    assert State.SENT.can_move_to(State.DELIVERED)
    assert not State.DELIVERED.can_move_to(State.ERROR)
    assert not State.SENT.can_move_to(State.OUTGOING)


def test_apply_sets_timestamps_and_errors() -> None:
    t = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    sent = apply_status(msg(), event(State.SENT, occurred_at=t, provider_message_id="p1"))
    assert sent.applied and sent.message.state is State.SENT
    assert sent.message.sent_at == t and sent.message.provider_message_id == "p1"
    failed = apply_status(sent.message, event(State.ERROR, status_code=4,
                                              status_text="não entregue"))
    assert failed.message.state is State.ERROR
    assert failed.message.error_code == "4" and failed.message.error_text == "não entregue"


def test_duplicate_event_is_a_noop() -> None:
    first = apply_status(msg(), event(State.DELIVERED))
    again = apply_status(first.message, event(State.DELIVERED))
    assert not again.applied and again.reason == "duplicate"
    assert again.message is first.message


def test_backwards_and_after_final_are_ignored() -> None:
    delivered = apply_status(msg(State.SENT), event(State.DELIVERED)).message
    late_sent = apply_status(delivered, event(State.SENT))
    assert not late_sent.applied and delivered.state is State.DELIVERED
    late_error = apply_status(delivered, event(State.ERROR))
    assert not late_error.applied and "final" in late_error.reason


@given(st.lists(st.sampled_from(list(State)), max_size=12))
def test_any_event_sequence_never_moves_backwards(states: list) -> None:
    current = msg(State.DRAFT)
    for state in states:
        before = current.state
        current = apply_status(current, event(state)).message
        assert current.state.rank >= before.rank
        if before.is_final:
            assert current.state is before


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Message(phone="+5511987654321", body="x", scheduled_at=dt.datetime(2026, 1, 1))


def test_ids_are_unique_and_sortable() -> None:
    ids = [new_id(now_ms=1_700_000_000_000 + i) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50 and all(len(i) == 26 for i in ids)


def test_an_id_is_the_crockford_base32_of_its_time_and_random_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for ms, noise in [(0, 0), (1_700_000_000_000, 2**80 - 1), (2**48 - 1, 12345678901234567)]:
        # the random bits are read in blocks: every 10 bytes of this one are ``noise``
        monkeypatch.setattr("os.urandom", lambda n, noise=noise: noise.to_bytes(10, "big")
                            * (n // 10) + bytes(n % 10))
        ids._forget_pool()
        value = (ms << 80) | noise
        expected = "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))
        assert new_id(now_ms=ms) == expected
        assert new_id(now_ms=ms) == expected  # the next 10 bytes of the same block
    ids._forget_pool()


def test_ids_use_each_random_byte_once_in_threads_and_after_fork() -> None:
    made: List[str] = []
    lock = threading.Lock()

    def make() -> None:
        mine = [new_id(now_ms=0) for _ in range(2_000)]  # same time: only the random part
        with lock:
            made.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(made) == 8_000
    if not hasattr(os, "fork"):
        return
    new_id()  # this thread's block is read: a child would start with its unread bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, " ".join(new_id(now_ms=0) for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    parent = {new_id(now_ms=0) for _ in range(20)}
    assert len(child) == 20 and not child & parent


def test_messages_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg().state = State.SENT  # type: ignore[misc]
