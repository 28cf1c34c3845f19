"""The process's heap once the bot has started: what was built to run it (the code, the
zone, PTB's objects, the pools and caches) lives as long as the process, so Python's cyclic
garbage collector is told to leave it out of its collections (`gc.freeze`). Without this,
each full collection walks about a quarter of a million long-lived objects, 100-160 ms on
this kind of machine, and holds everything (the handlers, the outbox, getUpdates) while it
does: under load, the slowest answers were the ones waiting for it.

The young generation is collected after YOUNG allocations instead of Python's 700. An
update allocates thousands of container objects, most of them freed at once by their
reference counts; at 700 the collector ran several times an update, each time walking the
objects of the update still in hand and moving the survivors to the middle generation,
whose collections (every tenth) took 5-7 ms each: about 7% of the bot's CPU under load
(callbacks timing each collection in the benchmark's bot process: 0.55 s of 7.4 s). At
YOUNG the same run collects a dozen times, 3-4 ms each (0.04-0.05 s in all), and the
objects it keeps a little longer are a few megabytes at most. Cycles (a session and its
transaction, a request and its connection) are still collected within moments.

Objects frozen here are still freed when nothing refers to them; only cycles among them are
never collected, and at start-up everything collectable has just been collected."""

from __future__ import annotations

import gc

YOUNG = 10_000  # allocations (less deallocations) of container objects between collections


def settle() -> int:
    """Collect what start-up left, freeze the rest, and collect the young generation less
    often; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
    return gc.get_freeze_count()
