"""Property: whatever is done to the shape of real updates (a field dropped, a type changed,
a number pushed out of range, control or surrogate characters injected), the bot keeps
listening: a real user's /help is answered within a second, getUpdates confirms everything,
and a ticket filed afterwards is stored whole. Runs the real Application over HTTP against
the emulator, on SQLite and PostgreSQL. A fixed seed in CI; SQUADBOT_FUZZ_EXAMPLES runs more."""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.ticket import Ticket
from tests.harness import Harness, start_harness

EXAMPLES = int(os.environ.get("SQUADBOT_FUZZ_EXAMPLES", "25"))
STRANGER = 7_000_001
GROUP = -1_000_000_000_777
USER = {"id": STRANGER, "is_bot": False, "first_name": "陌生人", "language_code": "zh-hans"}
PRIVATE = {"id": STRANGER, "type": "private", "first_name": "陌生人"}
IN_GROUP = {"id": GROUP, "type": "supergroup", "title": "某群"}
DATE = 1_790_000_000

# updates of the shapes Telegram sends, from someone who is not in the zone
REAL_UPDATES: list[dict[str, Any]] = [
    {
        "message": {
            "message_id": 11,
            "from": USER,
            "chat": PRIVATE,
            "date": DATE,
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        }
    },
    {"message": {"message_id": 12, "from": USER, "chat": PRIVATE, "date": DATE, "text": "你好"}},
    {
        "message": {
            "message_id": 13,
            "from": USER,
            "chat": IN_GROUP,
            "date": DATE,
            "text": "收到",
            "reply_to_message": {
                "message_id": 9,
                "from": {"id": 1, "is_bot": True, "first_name": "SquadBot"},
                "chat": IN_GROUP,
                "date": DATE - 60,
                "text": "工单 PV-2611-0001",
            },
        }
    },
    {
        "message": {
            "message_id": 14,
            "from": USER,
            "chat": PRIVATE,
            "date": DATE,
            "photo": [
                {"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90},
                {"file_id": "p2", "file_unique_id": "u2", "width": 800, "height": 800},
            ],
            "caption": "现场照片",
        }
    },
    {
        "message": {
            "message_id": 15,
            "from": USER,
            "chat": PRIVATE,
            "date": DATE,
            "document": {"file_id": "d1", "file_unique_id": "ud1", "file_name": "a.pdf"},
        }
    },
    {
        "message": {
            "message_id": 16,
            "from": USER,
            "chat": PRIVATE,
            "date": DATE,
            "location": {"latitude": 32.2, "longitude": 119.8},
        }
    },
    {
        "edited_message": {
            "message_id": 12,
            "from": USER,
            "chat": PRIVATE,
            "date": DATE,
            "edit_date": DATE + 5,
            "text": "你好！",
        }
    },
    {
        "callback_query": {
            "id": "4382",
            "from": USER,
            "chat_instance": "-77",
            "data": "t:abcdef",
            "message": {
                "message_id": 17,
                "from": {"id": 1, "is_bot": True, "first_name": "SquadBot"},
                "chat": PRIVATE,
                "date": DATE,
                "text": "请选择",
            },
        }
    },
    {
        "message": {
            "message_id": 18,
            "from": USER,
            "chat": IN_GROUP,
            "date": DATE,
            "pinned_message": {"chat": IN_GROUP, "message_id": 3, "date": 0},
        }
    },
]

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
OUT_OF_RANGE = st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**20, 10**15, -1, 0])
ODD_CHARACTERS = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\u202e", "\u200b", "\u200f", "\x07", "\x1b", "\r\n", "\ufeff"]
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place inside an update's content (never the update_id or the kind's key)."""
    if len(prefix) >= 2:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def parent_of(update: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = update
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def mutated_updates(draw: st.DrawFn) -> dict[str, Any]:
    update: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(REAL_UPDATES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = list(paths(update))
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = parent_of(update, path)
        key = path[-1]
        how = draw(st.sampled_from(["drop", "retype", "out of range", "inject"]))
        if how == "drop":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif how == "retype":
            parent[key] = draw(ODD_VALUES)
        elif how == "out of range":
            parent[key] = draw(OUT_OF_RANGE)
        else:
            text = parent[key] if isinstance(parent[key], str) else str(parent[key])
            at = draw(st.integers(min_value=0, max_value=len(text)))
            parent[key] = text[:at] + draw(ODD_CHARACTERS) + text[at:]
    return update


async def help_answered_within(h: Harness, chat: int, seconds: float) -> float:
    before = len(h.emu.sent(chat))
    started = time.monotonic()
    h.emu.send_text(chat, "/help")
    await h.emu.wait_for(lambda: len(h.emu.sent(chat)) > before, timeout=seconds)
    return time.monotonic() - started


def run_property(tmp_path: Path, engine: Engine | None) -> None:
    loop = asyncio.new_event_loop()
    h = loop.run_until_complete(start_harness(tmp_path, engine=engine))
    try:
        loop.run_until_complete(h.join("qian.hao", "enterprise", project="PV01"))
        loop.run_until_complete(h.settle())
        chat = h.ids["qian.hao"]
        slowest: list[float] = []

        @settings(
            max_examples=EXAMPLES,
            derandomize=EXAMPLES <= 25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.lists(mutated_updates(), min_size=1, max_size=4))
        def bad_updates_stop_nobody(batch: list[dict[str, Any]]) -> None:
            for update in batch:
                h.emu.send_raw_update(update)
            slowest.append(loop.run_until_complete(help_answered_within(h, chat, 1.0)))
            loop.run_until_complete(h.settle())
            assert h.emu.pending_updates() == 0

        bad_updates_stop_nobody()
        text = "厂区临时停水，混凝土浇筑受影响，请协调备用水源"
        number = loop.run_until_complete(h.file_ticket("qian.hao", "临时停水", text))
        with Session(h.engine) as session:
            ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.description == text
        assert max(slowest) < 1.0
    finally:
        loop.run_until_complete(h.stop())
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()


def test_mutated_updates_never_stop_the_bot_on_sqlite(tmp_path: Path) -> None:
    run_property(tmp_path, None)


@pytest.mark.postgres
def test_mutated_updates_never_stop_the_bot_on_postgresql(
    tmp_path: Path, pg_engine: Engine
) -> None:
    run_property(tmp_path, pg_engine)
