"""The process's heap once the bot has started: what was built to run it (the code, the
zone, PTB's objects, the pools and caches) lives as long as the process, so Python's cyclic
garbage collector is told to leave it out of its collections (`gc.freeze`). Without this,
each full collection walked about a quarter of a million long-lived objects and held
everything (the handlers, the outbox, getUpdates) while it did: the slowest answers under
load were the ones waiting for it. Young objects are collected less often too: most of what
an update allocates is freed by reference counting before a collection would look at it.

Objects frozen here are still freed when nothing refers to them; only cycles among them are
never collected, and at start-up everything collectable has just been collected."""

from __future__ import annotations

import gc

# allocations between two collections of the youngest generation (Python's default: 700)
YOUNG_THRESHOLD = 10_000


def settle() -> int:
    """Collect what start-up left, then freeze the rest; returns how many objects were
    frozen."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()
