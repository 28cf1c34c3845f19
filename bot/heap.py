"""The process's heap once the bot has started: what was built to run it (the code, the
zone, PTB's objects, the pools and caches) lives as long as the process, so Python's cyclic
garbage collector is told to leave it out of its collections (`gc.freeze`). Without this,
each full collection walks about a quarter of a million long-lived objects, 100-160 ms on
this kind of machine, and holds everything (the handlers, the outbox, getUpdates) while it
does: under load, the slowest answers were the ones waiting for it.

The collector's thresholds are left as Python sets them: young cycles (a request's httpx
objects, a unit of work's session and desk) are still collected as promptly as before.
Objects frozen here are still freed when nothing refers to them; only cycles among them are
never collected, and at start-up everything collectable has just been collected."""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect what start-up left, then freeze the rest; returns how many objects were
    frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
