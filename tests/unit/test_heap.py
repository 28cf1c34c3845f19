"""Once started, the bot leaves what it built out of garbage collection (bot/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot import heap


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_up_objects_are_frozen_and_the_thresholds_left_alone(restored: None) -> None:
    threshold = gc.get_threshold()
    kept = [Node() for _ in range(100)]
    frozen = heap.settle()
    assert frozen == gc.get_freeze_count() > len(kept)
    assert not any(node is kept[0] for node in gc.get_objects())  # out of every generation
    assert gc.get_threshold() == threshold  # young cycles collected as promptly as before


def test_garbage_left_by_start_up_is_collected_before_the_freeze(restored: None) -> None:
    gc.disable()  # no collection of its own between the two looks
    try:
        left = Node()
        gone = weakref.ref(left)
        del left  # a cycle nothing refers to: garbage, not yet collected
        assert gone() is not None
        heap.settle()
        assert gone() is None  # collected, not frozen for the life of the process
    finally:
        gc.enable()


def test_cycles_made_after_the_freeze_are_still_collected(restored: None) -> None:
    heap.settle()
    later = Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
