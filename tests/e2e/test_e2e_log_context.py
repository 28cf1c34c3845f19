"""JSON log lines from the running bot say what they are about: a line logged while an
update is handled carries its update id and chat, and the ticket once the handling changed
one; a line the outbox logs about a message carries its chat and ticket."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from telegram import Update
from telegram.ext import ContextTypes, TypeHandler

from bot import logs
from tests.e2e.builders import filed_ticket, zone_with_people
from tests.harness import Harness

TOKEN_SECRET = "SANDBOX-squadbot-token"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger's lines as the JSON format writes them, behind the token filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLines())
    handler.addFilter(logs.TokenFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_carry_the_update_the_chat_and_the_ticket(
    harness: Harness, json_log: io.StringIO
) -> None:
    h = harness
    people = await zone_with_people(h)
    await h.settle()
    note = logging.getLogger("tests.handled")

    async def handled(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        note.warning("handled")  # after every handler of the update has run

    h.service.app.add_handler(TypeHandler(Update, handled), group=99)
    h.emu.block(people.lead)  # what the outbox says to the lead fails
    number, _ticket = await filed_ticket(h)
    await h.settle()
    found = lines(json_log)
    seen = [e for e in found if e["logger"] == "tests.handled"]
    assert seen and all(e["chat"] == people.enterprise and "update_id" in e for e in seen)
    assert len({e["update_id"] for e in seen}) == len(seen)  # one line per update
    assert seen[-1]["ticket"] == number  # the confirmation filed it
    assert not any("ticket" in e for e in seen[:-1])  # before, no ticket was touched
    failed = [e for e in found if "failed permanently" in e["message"]]
    assert failed and all(e["chat"] == people.lead for e in failed)
    assert any(e.get("ticket") == number for e in failed)
    assert TOKEN_SECRET not in json_log.getvalue()
