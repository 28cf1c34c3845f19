"""The overall window: whatever the network does to a request between its start and its
answer, Telegram never sees more than 30 sends in one second, and nothing is lost to gaps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.outbox.pacing import IN_FLIGHT_RECHECK, Sending, Window


def _run(latencies: list[float], where: list[float], count: int) -> list[float]:
    """Send as fast as the window allows, one at a time or overlapping; return the moments
    the server saw each request (anywhere between its start and its answer)."""
    window = Window(count, 1.0)
    now = 0.0
    seen: list[float] = []
    flying: list[tuple[float, Sending]] = []  # (answer time, its Sending)
    for latency, fraction in zip(latencies, where, strict=True):
        while True:
            for answered, sending in [f for f in flying if f[0] <= now]:
                sending.done(answered)
            flying = [f for f in flying if f[0] > now]
            wait = window.wait_time(now)
            if wait <= 0:
                break
            now += max(wait, 1e-6)
        sending = window.take(now)
        flying.append((now + latency, sending))
        seen.append(now + fraction * latency)
    return seen


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.6), min_size=1, max_size=150).flatmap(
        lambda lat: st.tuples(
            st.just(lat), st.lists(st.floats(0.0, 1.0), min_size=len(lat), max_size=len(lat))
        )
    )
)
def test_no_server_window_ever_holds_more_than_the_limit(
    case: tuple[list[float], list[float]],
) -> None:
    latencies, where = case
    seen = sorted(_run(latencies, where, 30))
    for i in range(len(seen) - 30):
        # Telegram's window (t - 1, t]: the 31st send after this one must be a second later
        assert seen[i + 30] - seen[i] > 1.0 - 1e-9


def test_answered_at_once_the_window_runs_at_the_full_rate() -> None:
    seen = _run([0.0] * 601, [0.0] * 601, 30)
    assert seen[600] <= 20.0 + 1e-6  # 600 sends after the first in 20 windows of 30
    assert seen[600] > 19.0


def test_a_full_window_of_sends_in_flight_waits_for_their_answers() -> None:
    window = Window(2, 1.0)
    first, _second = window.take(0.0), window.take(0.0)
    assert window.wait_time(5.0) == IN_FLIGHT_RECHECK  # unanswered: still counted
    first.done(5.0)
    assert window.wait_time(5.5) == 0.5  # counted from its answer
    assert window.wait_time(6.0) == 0.0


def test_after_a_pause_there_is_room_at_once() -> None:
    window = Window(30, 1.0)
    for _ in range(30):
        window.take(0.0).done(0.0)
    assert window.wait_time(0.5) == 0.5
    assert window.wait_time(3.0) == 0.0
