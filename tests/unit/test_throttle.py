"""The token bucket per user and the wrong-invite-code window (models/throttle.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.throttle import FloodLimits, Guesses, Throttle

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def test_a_bucket_lets_the_burst_through_then_one_a_second() -> None:
    throttle = Throttle(FloodLimits(burst=20, per_second=1.0))
    assert all(throttle.admit(1, T0) for _ in range(20))
    assert not throttle.admit(1, T0)
    assert throttle.admit(2, T0)  # someone else is not slowed down
    assert not throttle.admit(1, T0 + timedelta(seconds=0.5))
    assert throttle.admit(1, T0 + timedelta(seconds=1.5))
    assert not throttle.admit(1, T0 + timedelta(seconds=1.5))
    later = T0 + timedelta(minutes=5)
    assert sum(throttle.admit(1, later) for _ in range(30)) == 20  # never more than the burst


def test_a_limited_user_is_told_once_per_window() -> None:
    throttle = Throttle(FloodLimits(notice_every=timedelta(seconds=60)))
    assert throttle.tell(1, T0)
    assert not throttle.tell(1, T0 + timedelta(seconds=59))
    assert throttle.tell(2, T0)
    assert throttle.tell(1, T0 + timedelta(seconds=60))


def test_five_wrong_codes_shut_an_account_out_for_the_hour() -> None:
    guesses = Guesses(FloodLimits(guesses=5, guess_window=timedelta(hours=1)))
    for minute in range(5):
        assert guesses.blocked_until(7, T0 + timedelta(minutes=minute)) is None
        guesses.wrong(7, T0 + timedelta(minutes=minute))
    until = guesses.blocked_until(7, T0 + timedelta(minutes=10))
    assert until == T0 + timedelta(hours=1)
    assert guesses.tell(7, until)
    assert not guesses.tell(7, until)
    assert guesses.blocked_until(8, T0 + timedelta(minutes=10)) is None
    # the oldest wrong code leaves the window: one more try
    assert guesses.blocked_until(7, T0 + timedelta(hours=1)) is None
