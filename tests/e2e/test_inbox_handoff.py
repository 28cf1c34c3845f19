"""On SQLite the updates the fetch has just stored reach the processing loop in memory, not
read back from the store, as long as nothing else waits there; a retry (or anything else
left waiting) sends the next pass back to the store, and a chat's updates are handled in
the order they came either way."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.builders import answer_help_with, enterprise_with_help, help_is_answered
from tests.harness import Harness


async def test_stored_updates_are_handed_over_without_being_read_back(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    inbox = h.service.inbox
    handed = inbox.handed_over
    for _ in range(3):
        await help_is_answered(h, "qian.hao")
    assert inbox.handed_over == handed + 3  # none of the three was read back


async def test_after_a_retry_the_store_is_read_and_the_chat_kept_in_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    real = await enterprise_with_help(h)
    handled: list[int] = []
    failed: list[int] = []

    async def fails_once(update: Any, context: Any) -> None:
        if not failed:
            failed.append(update.update_id)
            raise ValueError("fails the first time only")
        await real(update, context)
        handled.append(update.update_id)

    answer_help_with(h, monkeypatch, fails_once)
    inbox = h.service.inbox
    handed = inbox.handed_over
    await help_is_answered(h, "qian.hao")  # handed over, fails, read back from the store, retried
    assert handled == failed  # handled once, on its second try
    assert inbox.handed_over == handed + 1  # the retry came from the store, not memory
    handed = inbox.handed_over
    await help_is_answered(h, "qian.hao")  # nothing waits any more: handed over again
    assert inbox.handed_over == handed + 1
    assert handled == sorted(handled) and len(handled) == 2
