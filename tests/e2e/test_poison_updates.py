"""One update of an odd shape must never stop the bot for everyone: it is kept (as a dead
letter when it cannot be handled), confirmed to Telegram, and every update behind it is
handled. End to end, over HTTP against the emulator, on SQLite and PostgreSQL.

Long because each odd shape is its own short scenario; they share the helpers above.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from sqlmodel import Session, col, select

from bot.cli import main as cli_main
from bot.inbox import MAX_ATTEMPTS, store_updates
from bot.inbox.storage import Waiting
from models.plumbing import InboxUpdate, OutboxMessage
from tests.e2e.builders import (
    answer_help_with,
    enterprise_with_help,
    filed_ticket,
    help_is_answered,
    raw_message,
    until,
)
from tests.harness import Harness

HELP = "/help"


def inbox_rows(h: Harness) -> list[InboxUpdate]:
    with Session(h.engine) as session:
        return list(session.exec(select(InboxUpdate).order_by(col(InboxUpdate.id))).all())


def dead(h: Harness) -> list[InboxUpdate]:
    return [r for r in inbox_rows(h) if r.dead_at is not None]


# --- the shape Telegram itself sends: a pin of a message the bot cannot see -------------------
async def test_a_pin_of_an_inaccessible_message_in_a_squad_group_is_ignored_quietly(
    any_harness: Harness,
) -> None:
    h = any_harness
    await h.join("liu.yang", "lead", squad="PV")
    await h.join("qian.hao", "enterprise", project="PV01")
    group = await h.bind_group("PV", "liu.yang", [])
    await h.settle()
    said_in_group = len(h.emu.sent(group))
    h.emu.pin_inaccessible(group, h.ids["liu.yang"], old_message_id=3)
    await help_is_answered(h, "qian.hao")
    await h.settle()
    assert h.emu.pending_updates() == 0
    assert len(h.emu.sent(group)) == said_in_group  # a service message: nothing to say
    assert dead(h) == []
    _, ticket = await filed_ticket(h, text="工地停水，急需恢复")
    assert ticket.description == "工地停水，急需恢复"


# --- fetching: one update PTB cannot parse does not fail the batch ---------------------------
UNPARSEABLE = {
    "date out of range": lambda u: u["message"].__setitem__("date", 10**15),
    "date of the wrong type": lambda u: u["message"].__setitem__("date", "yesterday"),
    "chat of the wrong type": lambda u: u["message"].__setitem__("chat", [1, 2]),
    "from of the wrong type": lambda u: u["message"].__setitem__("from", "someone"),
}


@pytest.mark.parametrize("shape", sorted(UNPARSEABLE))
async def test_an_update_that_cannot_be_parsed_is_kept_and_confirmed(
    any_harness: Harness, shape: str
) -> None:
    h = any_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    stranger = await h.stranger()
    bad = raw_message(stranger, "/help", update_id=0)
    del bad["update_id"]
    UNPARSEABLE[shape](bad)
    # in one getUpdates batch with a good update behind it
    h.emu.send_raw_update(bad)
    good = raw_message(h.ids["qian.hao"], HELP, update_id=0)
    del good["update_id"]
    before = len(h.emu.sent(h.ids["qian.hao"]))
    h.emu.send_raw_update(good)
    await h.emu.wait_for(lambda: len(h.emu.sent(h.ids["qian.hao"])) > before, timeout=8.0)
    await h.settle()
    assert h.emu.pending_updates() == 0
    letters = dead(h)
    assert len(letters) == 1 and letters[0].error
    assert json.loads(letters[0].payload)["message"]["text"] == "/help"
    _, ticket = await filed_ticket(h, text="解析之后提交的工单")
    assert ticket.description == "解析之后提交的工单"


async def test_a_lone_surrogate_and_nul_are_stored_as_meant(any_harness: Harness) -> None:
    """UTF-8 cannot hold a lone surrogate and PostgreSQL text refuses NUL: the update is still
    stored, and the user's text reaches the ticket without them."""
    h = any_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    _, ticket = await filed_ticket(h, text="水管\x00爆了\ud800，请尽快处理")
    assert ticket.description == "水管爆了\ufffd，请尽快处理"
    assert dead(h) == []
    assert h.emu.pending_updates() == 0


# --- handling: a failure that repeats is given up on, nothing behind it waits ----------------
async def test_an_id_too_big_for_the_database_is_dead_lettered(any_harness: Harness) -> None:
    h = any_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    huge = 2**70
    h.emu.send_raw_update(
        {k: v for k, v in raw_message(huge, "/help", update_id=0).items() if k != "update_id"}
    )
    await help_is_answered(h, "qian.hao")
    await h.settle()
    letters = dead(h)
    assert len(letters) == 1
    assert letters[0].attempts == MAX_ATTEMPTS
    assert h.emu.pending_updates() == 0
    _, ticket = await filed_ticket(h, text="大号用户之后的工单")
    assert ticket.description == "大号用户之后的工单"


async def test_a_handler_that_always_fails_is_retried_then_given_up_and_the_user_told(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.join("shi.lei", "enterprise", project="PV01")
    await h.settle()
    import handlers.onboarding as onboarding

    real = onboarding.show_help
    calls: list[int] = []

    async def broken_for_qian(update: Any, context: Any) -> None:
        if update.effective_user.id == h.ids["qian.hao"]:
            calls.append(update.update_id)
            raise ValueError("a bug that fails every time")
        await real(update, context)

    monkeypatch.setattr(onboarding, "show_help", broken_for_qian)
    answer_help_with(h, monkeypatch, broken_for_qian)
    caplog.set_level(logging.ERROR)
    qian = h.ids["qian.hao"]
    before = len(h.emu.sent(qian))
    h.emu.send_text(qian, HELP)
    await help_is_answered(h, "shi.lei")  # not held up behind the failing one
    await h.emu.wait_for(lambda: len(h.emu.sent(qian)) > before, timeout=8.0)
    await h.settle()
    assert len(calls) == MAX_ATTEMPTS
    letters = dead(h)
    assert len(letters) == 1 and "a bug that fails every time" in (letters[0].error or "")
    told = h.texts(qian)[before:]
    assert len(told) == 1  # told once, not once per attempt
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # the first failure in full, then quiet


async def test_a_busy_store_is_retried_not_dead_lettered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    h = harness
    real = await enterprise_with_help(h)
    failures = {"left": MAX_ATTEMPTS + 3}

    async def busy_then_fine(update: Any, context: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        await real(update, context)

    answer_help_with(h, monkeypatch, busy_then_fine)
    await help_is_answered(h, "qian.hao")
    await h.settle()
    assert failures["left"] == 0
    assert dead(h) == []


# --- sending: one row that cannot be sent does not stop the pass ------------------------------
async def test_an_outbox_row_that_cannot_be_rendered_fails_alone(any_harness: Harness) -> None:
    h = any_harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    with Session(h.engine) as session:
        broken = OutboxMessage(
            created_at=h.clock.now(),
            chat_id=h.ids["qian.hao"],
            template="help.enterprise",
            params="{this is not json",
            next_attempt_at=h.clock.now(),
        )
        session.add(broken)
        session.commit()
        broken_id = broken.id
    h.service.delivery.poke()
    await help_is_answered(h, "qian.hao")
    await h.settle()
    with Session(h.engine) as session:
        row = session.get(OutboxMessage, broken_id)
        assert row is not None and row.state == "failed"
        assert "JSONDecodeError" in (row.last_error or "")


async def test_a_chat_id_that_is_not_a_number_fails_alone(harness: Harness) -> None:
    """SQLite stores what it is given: a row whose chat id is text cannot be sent."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    with h.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO outboxmessage (created_at, channel, chat_id, kind, template, params,"
            " locale, state, attempts, next_attempt_at) VALUES (?, 'telegram', 'abc', 'text',"
            " 'help.enterprise', '{}', 'zh-CN', 'pending', 0, ?)",
            (h.clock.now().replace(tzinfo=None), h.clock.now().replace(tzinfo=None)),
        )
    h.service.delivery.poke()
    await help_is_answered(h, "qian.hao")
    await h.settle()
    with Session(h.engine) as session:
        states = session.exec(
            select(OutboxMessage.state).where(col(OutboxMessage.template) == "help.enterprise")
        ).all()
    assert "failed" in states and "pending" not in states


# --- getUpdates answered 409 Conflict ---------------------------------------------------------
async def test_a_conflict_from_get_updates_is_named_once_and_retried(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    caplog.set_level(logging.WARNING)
    h.emu.fail_next("getUpdates", status=409, description="Conflict: terminated by other", count=3)
    await help_is_answered(h, "qian.hao")  # the getUpdates in flight brought it

    def refused() -> int:
        return sum(
            1 for method, _, status in h.emu.calls if method == "getUpdates" and status == 409
        )

    # the three calls after it, refused one by one
    await until(lambda: refused() >= 3, 10.0, lambda: f"{refused()} of 3 refused")
    await help_is_answered(h, "qian.hao")  # polling again
    named = [r for r in caplog.records if "409 Conflict" in r.getMessage()]
    assert len(named) == 1
    assert "another process is polling" in named[0].getMessage()


# --- update ids that start again ---------------------------------------------------------------
async def test_a_reused_update_id_with_a_new_body_is_handled(harness: Harness) -> None:
    """After a week without updates Telegram may reuse ids: same id, new body, handled."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    qian = h.ids["qian.hao"]
    first = raw_message(qian, "/help", update_id=424_242)
    before = len(h.emu.sent(qian))
    h.emu.send_raw_update(first)
    await h.emu.wait_for(lambda: len(h.emu.sent(qian)) == before + 1)
    # the same update again (a redelivery): nothing new
    assert store_updates(h.engine, [first], h.clock) == 0
    later = raw_message(qian, "/my", update_id=424_242)
    later["message"]["date"] += 8 * 24 * 3600
    h.emu.send_raw_update(later)
    await h.emu.wait_for(lambda: len(h.emu.sent(qian)) == before + 2)
    await h.settle()
    assert [r.update_id for r in inbox_rows(h)].count(424_242) == 2


# --- service messages and update kinds nobody handles -----------------------------------------
SERVICE_MESSAGES: dict[str, dict[str, Any]] = {
    "new members": {"new_chat_members": [{"id": 99, "is_bot": False, "first_name": "x"}]},
    "left member": {"left_chat_member": {"id": 99, "is_bot": False, "first_name": "x"}},
    "topic created": {"forum_topic_created": {"name": "停水", "icon_color": 7322096}},
    "boost added": {"boost_added": {"boost_count": 2}},
    "title changed": {"new_chat_title": "新群名"},
    "pinned accessible": {
        "pinned_message": {
            "message_id": 5,
            "date": 1_790_000_000,
            "chat": {"id": -1, "type": "group", "title": "t"},
            "text": "旧通知",
        }
    },
}


async def test_service_messages_and_unknown_kinds_are_confirmed_quietly(
    harness: Harness,
) -> None:
    h = harness
    await h.join("liu.yang", "lead", squad="PV")
    await h.join("qian.hao", "enterprise", project="PV01")
    group = await h.bind_group("PV", "liu.yang", [])
    await h.settle()
    in_group = len(h.emu.sent(group))
    lead = h.ids["liu.yang"]
    for fields in SERVICE_MESSAGES.values():
        h.emu.send_raw_update(
            {
                "message": {
                    "message_id": 1,
                    "from": {"id": lead, "is_bot": False, "first_name": "l"},
                    "chat": {"id": group, "type": "supergroup", "title": "t"},
                    "date": 1_790_000_000,
                    **fields,
                }
            }
        )
    # kinds the bot does not ask for, and one no Bot API version has yet
    chat = {"id": group, "type": "supergroup", "title": "t"}
    someone = {"id": lead, "is_bot": False, "first_name": "l"}
    unknown = [
        {
            "update_id": 880_001,
            "message_reaction": {
                "chat": chat,
                "message_id": 1,
                "user": someone,
                "date": 1_790_000_000,
                "old_reaction": [],
                "new_reaction": [{"type": "emoji", "emoji": "👍"}],
            },
        },
        {
            "update_id": 880_002,
            "chat_boost": {
                "chat": chat,
                "boost": {
                    "boost_id": "b1",
                    "add_date": 1_790_000_000,
                    "expiration_date": 1_800_000_000,
                    "source": {"source": "premium", "user": someone},
                },
            },
        },
        {"update_id": 880_003, "some_future_kind": {"anything": [1, 2, 3]}},
    ]
    store_updates(h.engine, unknown, h.clock)
    await help_is_answered(h, "qian.hao")
    await h.settle()
    assert len(h.emu.sent(group)) == in_group
    assert h.emu.pending_updates() == 0
    assert dead(h) == []


# --- the dead letters are visible and can be retried ------------------------------------------
async def test_dead_letters_are_listed_and_retried_from_the_command_line(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    bad = raw_message(h.ids["qian.hao"], "/help", update_id=0)
    del bad["update_id"]
    bad["message"]["date"] = 10**15
    h.emu.send_raw_update(bad)
    await help_is_answered(h, "qian.hao")
    await h.settle()
    [letter] = dead(h)
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", h.engine.url.render_as_string(False))
    monkeypatch.delenv("SQUADBOT_TELEGRAM_TOKEN", raising=False)
    assert cli_main(["inbox", "dead"]) == 0
    out = capsys.readouterr().out
    assert f"{letter.id}\tupdate {letter.update_id}" in out and "1 dead letter(s)" in out
    # fixed: the date is made readable again and the letter retried
    with Session(h.engine) as session:
        row = session.get(InboxUpdate, letter.id)
        assert row is not None
        body = json.loads(row.payload)
        body["message"]["date"] = 1_790_000_000
        row.payload = json.dumps(body)
        session.add(row)
        session.commit()
    assert cli_main(["inbox", "retry", str(letter.id)]) == 0
    assert cli_main(["inbox", "retry", str(letter.id)]) == 2  # no longer dead
    capsys.readouterr()
    qian = h.ids["qian.hao"]
    before = len(h.emu.sent(qian))
    h.service.inbox.wake()
    await h.emu.wait_for(lambda: len(h.emu.sent(qian)) > before, timeout=8.0)
    await h.settle()
    assert dead(h) == []


async def test_a_loop_that_dies_is_restarted(harness: Harness) -> None:
    """Whatever ends a loop unexpectedly, the supervisor starts it again."""
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.settle()
    task = next(t for t in h.service._tasks if t.get_name() == "inbox-process")
    inbox = h.service.inbox
    real = inbox._unprocessed
    blown = {"left": 2}

    def explode() -> list[Waiting]:
        if blown["left"]:
            blown["left"] -= 1
            raise RuntimeError("an error nobody expected")
        return real()

    inbox._unprocessed = explode  # type: ignore[method-assign]
    inbox.wake()
    await asyncio.sleep(0)
    await help_is_answered(h, "qian.hao")
    assert not task.done()
    state = h.service.supervisor.state("inbox-process")
    assert state.restarts == 2 and "an error nobody expected" in (state.last_error or "")
