"""The sandbox's transcript as a visitor reads it: the emulator's chat log, printed while it
grows, in the reader's language, with framing lines (scene headings, notes, the passing of
time) between the messages and a progress line under them.

The emulator writes one line per event in a fixed shape (see `bot.sandbox.text` and its
test): `[chat] who: text`, `[chat] who (edited): text`, `[chat] who pressed [button]` and
`  (toast to who) text`. Those English frames are rewritten here from the catalogs; a line of
any other shape is printed as it is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn

from bot.i18n import t
from bot.sandbox.emulator import BotApiEmulator

_NAME = r"[^:\n]+?"  # names and chat titles never hold a colon
_PRESSED = re.compile(rf"^\[(?P<chat>[^\]\n]*)\] (?P<who>{_NAME}) pressed \[(?P<button>.*)\]$")
_ANSWER = re.compile(r"^  \((?P<kind>toast|alert) to (?P<who>[^)\n]*)\) (?P<text>.*)$", re.S)
_SAID = re.compile(
    rf"^\[(?P<chat>[^\]\n]*)\] (?P<who>{_NAME})(?P<note> \((?:edited|deleted)\))?: (?P<text>.*)$",
    re.S,
)
_MEDIA = re.compile(r"^\[(?P<kind>photo|document|location)(?: (?P<detail>[^\]\n]*))?\]")


def _media(lang: str, text: str) -> str:
    """The emulator's `[photo]`, `[document NAME]`, `[location LAT, LON]` tags, translated."""
    match = _MEDIA.match(text)
    if match is None:
        return text
    kind, detail = match["kind"], match["detail"] or ""
    if kind == "photo":
        tag = t(lang, "demo.media_photo")
    elif kind == "document":
        tag = t(lang, "demo.media_document", name=detail)
    else:
        tag = t(lang, "demo.media_location", where=detail)
    return tag + text[match.end() :]


def localise(line: str, lang: str) -> str:
    """One emulator transcript line in the reader's language."""
    if match := _PRESSED.match(line):
        return t(lang, "demo.pressed", chat=match["chat"], who=match["who"], button=match["button"])
    if match := _ANSWER.match(line):
        key = "demo.popup" if match["kind"] == "alert" else "demo.notice"
        return t(lang, key, who=match["who"], text=match["text"])
    if match := _SAID.match(line):
        note = (match["note"] or "").strip()
        key = {"(edited)": "demo.edited", "(deleted)": "demo.deleted"}.get(note, "demo.said")
        text = _media(lang, match["text"])
        return t(lang, key, chat=match["chat"], who=match["who"], text=text)
    return line


def _acting_chat(line: str, bot: str) -> str | None:
    """The chat in which a person did something (wrote, tapped a button), or None for the
    bot's messages, its answers to buttons and edits."""
    if match := _PRESSED.match(line):
        return match["chat"]
    match = _SAID.match(line)
    if match is not None and match["who"] != bot and not match["note"]:
        return match["chat"]
    return None


def _chat_of(line: str) -> str | None:
    match = _SAID.match(line)
    return match["chat"] if match is not None else None


class Transcript:
    """Prints the emulator's transcript as it grows. `frame` puts a line of its own between
    the messages, after everything said so far; `lines` keeps all that was printed.

    Everything the bot says because of one person's action goes out at once to several chats,
    in whatever order Telegram answers; a reader expects the answer in the chat where they
    acted first. So the lines are printed a step at a time: a person's action, the bot's
    answers in that chat, then the rest in the order they were sent."""

    def __init__(self, emu: BotApiEmulator, lang: str, console: Console, scenes: int) -> None:
        self.emu = emu
        self.lang = lang
        self.console = console
        self.scenes = scenes
        self.scene = 0
        self.messages = 0
        self.lines: list[str] = []
        self._bot = str(emu.bot_user.get("first_name", ""))
        self._seen = 0
        self._pending: list[str] = []
        self._long_bodies: set[str] = set()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def _print(self, text: str) -> None:
        self.lines.append(text)
        self.console.out(text, highlight=False)

    def flush(self, *, settled: bool = True) -> None:
        """Print what the emulator logged since the last call. Unless `settled` (the step is
        over), the last person's action and what followed it wait, as more may come."""
        log = self.emu.transcript()
        self._pending.extend(log[self._seen :])
        self._seen = len(log)
        steps: list[list[str]] = [[]]
        for line in self._pending:
            if _acting_chat(line, self._bot) is not None and steps[-1]:
                steps.append([])
            steps[-1].append(line)
        self._pending = [] if settled else steps.pop()
        for step in steps:
            for line in self._in_reading_order(step):
                self._print(localise(self._shorten(line), self.lang))
                self.messages += 1
        self._update()

    def _in_reading_order(self, step: list[str]) -> list[str]:
        chat = _acting_chat(step[0], self._bot) if step else None
        if chat is None:
            return step
        here = [line for line in step[1:] if _chat_of(line) in (chat, None)]
        elsewhere = [line for line in step[1:] if _chat_of(line) not in (chat, None)]
        return [step[0], *here, *elsewhere]

    def _shorten(self, line: str) -> str:
        """A long message seen before in full (the help each new member gets) is shown by its
        first line only."""
        match = _SAID.match(line)
        if match is None or "\n" not in match["text"]:
            return line
        if match["text"] not in self._long_bodies:
            self._long_bodies.add(match["text"])
            return line
        first = match["text"].split("\n", 1)[0]
        return line[: match.start("text")] + t(self.lang, "demo.same_as_above", first=first)

    def frame(self, text: str, *, blank: bool = False) -> None:
        """A framing line (heading, note, time passing) after what has been said so far."""
        self.flush()
        if blank:
            self._print("")
        for line in text.split("\n"):
            self._print(line)

    def start_scene(self, title: str) -> None:
        self.scene += 1
        self.frame(title, blank=True)

    def _update(self) -> None:
        if self._progress is not None and self._task is not None:
            description = t(
                self.lang,
                "demo.progress",
                scene=max(self.scene, 1),
                scenes=self.scenes,
                messages=self.messages,
            )
            self._progress.update(self._task, description=description, completed=self.scene)

    @contextmanager
    def live(self) -> Iterator[Transcript]:
        """The progress line under the transcript, on a terminal (nothing when piped)."""
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        live = self.console.is_terminal
        with Progress(*columns, console=self.console, transient=True, disable=not live) as progress:
            self._progress = progress
            self._task = progress.add_task("", total=self.scenes)
            self._update()
            try:
                yield self
            finally:
                self._progress = None
                self._task = None

    async def follow(self, every: float = 0.05) -> None:
        """Print new lines as they come, until cancelled."""
        while True:
            self.flush(settled=False)
            await asyncio.sleep(every)
