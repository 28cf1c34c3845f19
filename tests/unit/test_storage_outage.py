"""Which database failures are the store's (waited out, never given up on), and how an
outage is said: once in the log each way, once to each person, and to /healthz."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.outage import REMIND_AFTER, StorageOutage
from models.db import is_transient


def operational(text: str) -> OperationalError:
    return OperationalError("INSERT INTO inboxupdate ...", {}, Exception(text))


@pytest.mark.parametrize(
    "text",
    [
        "attempt to write a readonly database",
        "database or disk is full",
        "database is locked",
        'connection failed: FATAL:  database "x" is not currently accepting connections',
        "terminating connection due to administrator command",
        "FATAL:  the database system is starting up",
        "cannot execute INSERT in a read-only transaction",
        'could not extend file "base/16384/2619": No space left on device',
    ],
)
def test_the_store_away_full_or_read_only_is_waited_out(text: str) -> None:
    assert is_transient(operational(text))


def test_a_fault_of_the_update_is_not_the_stores() -> None:
    assert not is_transient(operational('relation "ticket" does not exist'))
    assert not is_transient(
        IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: ticket.number"))
    )
    assert not is_transient(ValueError("database or disk is full"))


class Ticking:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_each_way_and_named_for_health(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Ticking()
    outage = StorageOutage(clock)
    caplog.set_level(logging.INFO, logger="bot.outage")
    assert outage.problem() is None and not outage.down
    for _ in range(5):
        outage.refused(operational("database or disk is full"))
        clock.now += 1
    assert outage.down and outage.outages == 1
    assert outage.message_key == "error.storage_unavailable"
    assert outage.problem() == "database refuses writes for 5s: database or disk is full"
    outage.recovered()
    outage.recovered()
    assert outage.problem() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "refuses writes (database or disk is full)" in lines[0]
    assert "takes writes again after 5.0s" in lines[1]


def test_a_lock_is_said_as_busy() -> None:
    outage = StorageOutage()
    outage.refused(operational("database is locked"))
    assert outage.message_key == "error.busy"
    outage.refused(operational("attempt to write a readonly database"))
    assert outage.message_key == "error.storage_unavailable"


def test_each_chat_is_told_once_even_if_the_store_comes_and_goes() -> None:
    clock = Ticking()
    outage = StorageOutage(clock)
    outage.refused(operational("database or disk is full"))
    assert outage.first_word_to(7)
    assert not outage.first_word_to(7)
    assert outage.first_word_to(8)
    outage.recovered()
    outage.refused(operational("database or disk is full"))
    assert not outage.first_word_to(7)
    clock.now += REMIND_AFTER
    assert outage.first_word_to(7)
