"""Property: whatever people send, the bot answers each person in their language or keeps a
deliberate silence, and nothing breaks. Hypothesis draws updates of every shape Telegram
delivers, from people of every kind: random Unicode (right-to-left and zero-width marks
included), text over 4,096 characters, a caption without media, stickers, polls, edited
messages, channel posts, messages from bots, commands addressed @otherbot, /start with
random payloads, replies to messages that have nothing to do with a ticket, and presses on
another squad's tickets; from an enterprise of the same project, an English-speaking
enterprise of another project, a member of another squad and strangers with any client
language, in private chats and in groups. Each is sent over HTTP through the real
Application, one at a time.

Invariants: no update fails (no error logged, no dead letter, no loop restarted); every
human in a private chat gets an answer, in their language (the outbox row's locale, and
the catalog's words), unless a limit deliberately silenced them (wrong invite codes);
groups may stay silent; no ticket and no history row changes; nothing of another
enterprise's ticket (its description, its contact's name or phone) reaches anyone.

A fixed seed and SQUADBOT_FUZZ_EXAMPLES (default 60) examples in CI; `make fuzz` runs
many more with fresh randomness."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, func, select

from bot.i18n import LOCALES, catalog, normalise
from bot.inbox import dead_letters, store_updates
from bot.sandbox.text import user_entities
from models.org import Person
from models.plumbing import OutboxMessage
from models.ticket import Ticket, TicketEvent
from tests.harness import Harness, start_harness

EXAMPLES = int(os.environ.get("SQUADBOT_FUZZ_EXAMPLES", "60"))
DATE = 1_790_000_000
SECRETS = ("东门二号井漏水", "北区配电房进水", "钱浩", "13900139101")
OTHER_GROUP = -1_000_000_000_555
GROUP_BOT = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}
# who sends: people of the zone by key, strangers by their client's language
PEOPLE = ("shi.lei", "yang.fan", "hu.bin")
STRANGERS = {"stranger.ar": "ar", "stranger.en": "en-GB", "stranger.none": None}
SPECIAL = [
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u2067",  # right-to-left isolate
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # zero-width no-break space
    "مرحبا",
    "שלום",
    "工地停水",
    "🚰",
    "e\u0301",
    "/",
    "@",
]
COMMANDS = [
    "/start", "/help", "/new", "/cancel", "/my", "/ticket", "/reply", "/note", "/resolve",
    "/lang", "/stats", "/ranking", "/overdue", "/export", "/bind", "/urge", "/lead",
    "/transfer", "/invite", "/reload", "/chatid", "/claim", "/menu",
]  # fmt: skip


def phrases(lang: str) -> set[str]:
    """The fixed words of every catalog message in a language, long enough to tell it."""
    shortest = 3 if lang == "zh-CN" else 6
    found = set()
    for template in catalog(lang).values():
        for literal, *_ in string.Formatter().parse(template):
            for part in literal.split("\n"):
                if len(part.strip()) >= shortest:
                    found.add(part.strip())
    return found


PHRASES = {lang: phrases(lang) for lang in LOCALES}


def speaks(text: str, lang: str) -> bool:
    return any(phrase in text for phrase in PHRASES[lang])


# --- what people send --------------------------------------------------------------------
texts = (
    st.lists(
        st.one_of(
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                min_size=1,
                max_size=8,
            ),
            st.sampled_from(SPECIAL),
        ),
        min_size=1,
        max_size=8,
    )
    .map("".join)
    .filter(lambda s: s.strip() != "")
)
long_texts = st.builds(lambda chunk, n: (chunk * n)[: 4097 + n], texts, st.integers(100, 5000))
commands = st.builds(
    lambda name, at, rest: f"{name}{at} {rest}".strip(),
    st.sampled_from(COMMANDS),
    st.sampled_from(["", "", "@otherbot", "@SquadBot_of_someone_else"]),
    st.one_of(st.just(""), texts, st.just("{number}"), st.just("{number} 我们来处理")),
)
start_payloads = st.builds(
    lambda payload: f"/start {payload}",
    st.one_of(texts, st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=64)),
)


# what an update may hold; the commonest twice, so that they are drawn more often
KINDS = [
    "text", "text", "long text", "command", "command", "start payload", "caption only",
    "sticker", "poll", "edited", "channel post", "from a bot", "reply", "press",
]  # fmt: skip


@dataclass(frozen=True)
class Send:
    """One update to send: `kind` of content, from `sender`, in `place`."""

    kind: str
    sender: str
    place: str  # "private", "group" (the squad's, bound) or "other group"
    text: str = ""
    reply_to: int | None = None
    card: int = 0


@st.composite
def sends(draw: st.DrawFn) -> Send:
    kind = draw(st.sampled_from(KINDS))
    if kind == "from a bot":
        return Send(kind, "bot", draw(st.sampled_from(["group", "other group"])), draw(texts))
    if kind == "channel post":
        return Send(kind, "channel", "channel", draw(texts))
    sender = draw(st.sampled_from(PEOPLE + tuple(STRANGERS)))
    places = ["private", "other group"] + (["group"] if sender == "hu.bin" else [])
    place = draw(st.sampled_from(places))
    if kind == "press":
        return Send(
            kind,
            sender,
            place,
            draw(st.one_of(texts, st.just("claim"))),
            card=draw(st.integers(0, 1)),
        )
    text = draw(
        {
            "long text": long_texts,
            "command": commands,
            "start payload": start_payloads,
        }.get(kind, texts)
    )
    reply_to = draw(st.integers(1, 10**6)) if kind == "reply" else None
    return Send(kind, sender, place, text, reply_to=reply_to)


# --- the zone and its people -------------------------------------------------------------
@dataclass
class Scene:
    h: Harness
    group: int
    cards: list[dict[str, Any]]
    claims: list[str]  # the claim buttons of the two tickets, as they were first sent
    number: str
    ids: dict[str, int] = field(default_factory=dict)
    message_ids: Iterator[int] = field(default_factory=lambda: itertools.count(700_000))
    errors: list[str] = field(default_factory=list)


class Errors(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.name}: {record.getMessage()}")


async def set_the_scene(h: Harness) -> Scene:
    await h.join("qian.hao", "enterprise", project="PV01")
    await h.join("liu.yang", "lead", squad="PV")
    await h.join("zhou.jun", "member", squad="PV")
    await h.join("shi.lei", "enterprise", project="PV01")
    await h.join("yang.fan", "enterprise", project="HV01", language="en")
    await h.join("hu.bin", "member", squad="HV")
    ids = {key: h.ids[key] for key in PEOPLE}
    for key, language in STRANGERS.items():
        ids[key] = 6_100_000 + len(ids)
        h.emu.add_user(ids[key], key, language_code=language)
        h.emu.send_text(ids[key], "/start")  # a bot message in the chat, to press on
    group = await h.bind_group("PV", "liu.yang", ["zhou.jun", "hu.bin"])
    h.emu.add_group(OTHER_GROUP, "某企业群", list(ids.values()))
    h.emu.send_text(ids["hu.bin"], "/bind", chat_id=OTHER_GROUP)  # a bot message to press on
    await h.emu.wait_for_messages(OTHER_GROUP, 1)
    claimed = await h.file_ticket("qian.hao", "临时停水", "东门二号井漏水")
    card = await h.said(group, f"新工单 {claimed}")
    claims = [h.button(card, "认领")]
    await h.answered(h.press("zhou.jun", card, "认领"))
    open_one = await h.file_ticket("qian.hao", "杆线迁移", "北区配电房进水")
    cards = [await h.said(group, f"新工单 {n}") for n in (claimed, open_one)]
    claims.append(h.button(cards[1], "认领"))
    await h.settle()
    return Scene(h, group, cards, claims, claimed, ids)


def user_of(scene: Scene, sender: str) -> dict[str, Any]:
    if sender == "bot":
        return dict(GROUP_BOT)
    language = STRANGERS.get(sender, "en" if sender == "yang.fan" else "zh-hans")
    user: dict[str, Any] = {"id": scene.ids[sender], "is_bot": False, "first_name": sender}
    if language is not None:
        user["language_code"] = language
    return user


def chat_of(scene: Scene, send: Send) -> dict[str, Any]:
    if send.place == "private":
        return {"id": scene.ids[send.sender], "type": "private", "first_name": send.sender}
    if send.place == "group":
        return {"id": scene.group, "type": "supergroup", "title": "光伏组件项目服务专班群"}
    return {"id": OTHER_GROUP, "type": "supergroup", "title": "某企业群"}


def update_of(scene: Scene, send: Send) -> dict[str, Any]:
    """The update as Telegram would deliver it."""
    text = send.text.replace("{number}", scene.number)
    if send.place == "channel":
        channel = {"id": -1_000_000_000_999, "type": "channel", "title": "某频道"}
        post = {"message_id": next(scene.message_ids), "chat": channel, "date": DATE}
        return {"channel_post": {**post, "sender_chat": channel, "text": text}}
    message: dict[str, Any] = {
        "message_id": next(scene.message_ids),
        "from": user_of(scene, send.sender),
        "chat": chat_of(scene, send),
        "date": DATE,
    }
    if send.kind == "caption only":
        message["caption"] = text
    elif send.kind == "sticker":
        message["sticker"] = {
            "file_id": "st1", "file_unique_id": "ust1", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "👍",
        }  # fmt: skip
    elif send.kind == "poll":
        message["poll"] = {
            "id": "p1", "question": text[:300], "total_voter_count": 0, "is_closed": False,
            "is_anonymous": True, "type": "regular", "allows_multiple_answers": False,
            "allows_revoting": True, "members_only": False,
            "options": [
                {"text": "是", "voter_count": 0, "persistent_id": "0"},
                {"text": "否", "voter_count": 0, "persistent_id": "1"},
            ],
        }  # fmt: skip
    else:
        message["text"] = text
        entities = user_entities(text)
        if entities:
            message["entities"] = entities
    if send.kind == "reply":
        message["reply_to_message"] = {
            "message_id": send.reply_to,
            "from": {"id": 99, "is_bot": False, "first_name": "某人"},
            "chat": message["chat"],
            "date": DATE - 60,
            "text": "与工单无关的一条消息",
        }
    if send.kind == "from a bot":
        message["sender_chat"] = message["chat"]
    if send.kind == "edited":
        return {"edited_message": {**message, "edit_date": DATE + 5}}
    return {"message": message}


def expected_language(h: Harness, send: Send) -> str:
    """Of a person in the zone, their own (as it is now: /lang may have changed it); of a
    stranger, their client's."""
    if send.sender in STRANGERS:
        return normalise(STRANGERS[send.sender])
    with Session(h.engine) as session:
        person = session.exec(select(Person).where(Person.key == send.sender)).one()
        return person.language or "zh-CN"


def silenced(h: Harness, user_id: int) -> bool:
    """Deliberately silent: too many wrong invite codes lately (told once, then quiet)."""
    return h.service.runner.guesses.blocked_until(user_id, h.clock.now()) is not None


def snapshot(h: Harness) -> tuple[Any, ...]:
    with Session(h.engine) as session:
        tickets = session.exec(select(Ticket).order_by(col(Ticket.id))).all()
        return (
            [
                (t.state, t.owner_id, t.squad_id, t.updated_at, t.description, t.rating)
                for t in tickets
            ],
            session.exec(select(func.count()).select_from(TicketEvent)).one(),
        )


def last_row(h: Harness) -> int:
    with Session(h.engine) as session:
        return int(session.exec(select(func.max(OutboxMessage.id))).one() or 0)


def rows_since(h: Harness, row_id: int) -> list[OutboxMessage]:
    with Session(h.engine) as session:
        return list(session.exec(select(OutboxMessage).where(col(OutboxMessage.id) > row_id)).all())


async def send_one(scene: Scene, send: Send) -> None:
    """Send it, let the bot finish, and check what it said back."""
    h = scene.h
    chat = chat_of(scene, send)["id"] if send.place != "channel" else 0
    before_messages = len(h.emu.sent())
    before_row = last_row(h)
    answer: dict[str, Any] | None = None
    if send.kind == "press":
        message = scene.cards[send.card] if send.place == "group" else h.emu.sent(chat)[-1]
        data = scene.claims[send.card] if send.text == "claim" else send.text
        query = h.emu.press(scene.ids[send.sender], chat, message["message_id"], data, strict=False)
        answer = await h.answered(query)
    elif send.kind == "channel post":
        store_updates(
            h.engine,
            [{"update_id": 90_000_000 + next(scene.message_ids), **update_of(scene, send)}],
            h.clock,
        )
        h.service.inbox.wake()
    else:
        h.emu.send_raw_update(update_of(scene, send))
    await h.settle()

    said = [m for m in h.emu.sent()[before_messages:]]
    for text in [str(m.get("text") or m.get("caption") or "") for m in said] + [
        str(answer["text"] if answer else "")
    ]:
        assert not any(secret in text for secret in SECRETS), (send, text)
    if send.sender in ("bot", "channel"):
        return
    language = expected_language(h, send)
    for row in rows_since(h, before_row):
        if row.chat_id == chat:
            assert row.locale == language, (send, row.template, row.locale)
    if answer is not None:
        assert answer["show_alert"] and speaks(str(answer["text"]), language), (send, answer)
        return
    mine = [str(m.get("text") or m.get("caption") or "") for m in said if m["chat"]["id"] == chat]
    if send.place == "private":
        if not mine:
            assert silenced(h, scene.ids[send.sender]), send  # else: every person is answered
        for text in mine:
            assert speaks(text, language), (send, language, text)


def test_whatever_people_send_each_is_answered_in_their_language_and_nothing_breaks(
    tmp_path: Path,
) -> None:
    loop = asyncio.new_event_loop()
    h = loop.run_until_complete(start_harness(tmp_path))
    errors: list[str] = []
    watcher = Errors(errors)
    logging.getLogger().addHandler(watcher)
    try:
        scene = loop.run_until_complete(set_the_scene(h))
        before = snapshot(h)
        kinds: set[str] = set()
        batches: list[int] = []

        @settings(
            max_examples=EXAMPLES,
            derandomize=EXAMPLES <= 60,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(sends(), min_size=1, max_size=3))
        def answered_or_quiet(batch: list[Send]) -> None:
            for send in batch:
                loop.run_until_complete(send_one(scene, send))
                kinds.add(send.kind)
            assert errors == [], errors
            batches.append(len(batch))

        answered_or_quiet()
        assert snapshot(h) == before  # no ticket, no history row changed
        assert dead_letters(h.engine) == []
        assert all(state.restarts == 0 for state in h.service.supervisor.loops.values())
        assert len(kinds) >= 10, kinds
        assert len(batches) >= EXAMPLES
    finally:
        logging.getLogger().removeHandler(watcher)
        loop.run_until_complete(h.stop())
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
