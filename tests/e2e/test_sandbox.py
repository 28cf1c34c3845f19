"""The sandbox demo as a visitor reads it (`make run` without a token): the whole story, in
the configured language, on the sandbox's own example zone, with the plan promise and the
reason for the urgent water deadlines, in reading order, and stopped by Ctrl-C in one line.

Each language is played once, through `run_sandbox` as the CLI calls it, with the outbox
unpaced and the fake clock moved by the script (no test waits for a deadline)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from sqlmodel import Session, col, create_engine, select

from bot.i18n import format_time, t
from bot.sandbox.script import EXAMPLE_ZONE, fragment, run_sandbox
from bot.sandbox.transcript import localise
from bot.settings import load_settings
from models.ticket import Ticket
from models.zone.parse import parse_zone
from tests.harness import FAST

CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
ZONE = parse_zone(EXAMPLE_ZONE.read_text(encoding="utf-8"), str(EXAMPLE_ZONE))
TZ = ZoneInfo(ZONE.zone.timezone)
NUMBERS = re.compile(r"YZ-\d{4}-000[123]")  # the month is the one the demo is played in


@dataclass
class Played:
    lang: str
    code: int
    lines: list[str]
    data_dir: Path
    zone_file: Path | None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def entries(self) -> list[str]:
        """One entry per message or framing line: a message's further lines, printed
        indented by four spaces, joined back to it as the bot wrote them."""
        out: list[str] = []
        for line in self.lines:
            if line.startswith("    ") and out:
                out[-1] += "\n" + line[4:]
            else:
                out.append(line)
        return out

    def tickets(self) -> list[Ticket]:
        engine = create_engine(f"sqlite:///{self.data_dir / 'sandbox.db'}")
        try:
            with Session(engine) as session:
                return list(session.exec(select(Ticket).order_by(col(Ticket.id))).all())
        finally:
            engine.dispose()


def play(folder: Path, lang: str, zone_file: Path | None = None) -> Played:
    """The demo as `squadbot sandbox` plays it, the settings read from the environment."""
    with pytest.MonkeyPatch.context() as env:
        env.chdir(folder)  # no .env of the developer's
        env.setenv("SQUADBOT_LANGUAGE", lang)
        env.setenv("SQUADBOT_DATA_DIR", str(folder / "data"))
        env.delenv("SQUADBOT_TELEGRAM_TOKEN", raising=False)
        if zone_file is None:
            env.delenv("SQUADBOT_ZONE_FILE", raising=False)
        else:
            env.setenv("SQUADBOT_ZONE_FILE", str(zone_file))
        settings = load_settings()
        out = io.StringIO()
        console = Console(file=out, highlight=False)
        code = asyncio.run(run_sandbox(settings, console=console, limits=FAST))
    return Played(lang, code, out.getvalue().splitlines(), folder / "data", settings.zone_file)


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Played:
    return play(tmp_path_factory.mktemp("sandbox-en"), "en")


@pytest.fixture(scope="module")
def chinese(tmp_path_factory: pytest.TempPathFactory) -> Played:
    """Played with SQUADBOT_ZONE_FILE pointing at a file that cannot be loaded: the sandbox
    must not read it, so every check of the Chinese story also checks that."""
    folder = tmp_path_factory.mktemp("sandbox-zh")
    broken = folder / "broken-zone.yaml"
    broken.write_text("zone: {code: [unclosed\npeople: 42\n", encoding="utf-8")
    return play(folder, "zh-CN", zone_file=broken)


@pytest.fixture(params=["zh-CN", "en"])
def played(request: pytest.FixtureRequest) -> Played:
    result: Played = request.getfixturevalue("chinese" if request.param == "zh-CN" else "english")
    return result


def zone_names() -> list[str]:
    """People's, projects', companies' and squads' names: the zone file's, in one language."""
    z = ZONE
    names = [z.zone.name, *(p.name for p in z.people), *(s.name for s in z.squads)]
    names += [n for p in z.projects for n in (p.name, p.enterprise)]
    return sorted(set(names), key=len, reverse=True)


def test_the_story_plays_to_its_end(played: Played) -> None:
    assert played.code == 0
    assert played.lines[-1].startswith(t(played.lang, "demo.footer").split("{", 1)[0])
    numbers = [ticket.number for ticket in played.tickets()]
    assert len(numbers) == 3 and all(NUMBERS.fullmatch(n) for n in numbers), numbers


def test_english_is_english_but_for_the_names(english: Played) -> None:
    text = english.text
    names = zone_names()
    assert "钱浩" in text and "光伏组件生产基地" in text  # names do appear, untranslated
    for name in names:
        text = text.replace(name, "")
    leftovers = sorted({line for line in text.splitlines() if CJK.search(line)})
    assert leftovers == []


def test_chinese_has_no_english_framing(chinese: Played) -> None:
    text = chinese.text
    for word in ("pressed", "toast", "(edited)", "Scene", "[photo]", "notice", "later"):
        assert word not in text, word
    allowed = (
        r"https?://\S+",  # the emulator's address
        r"(?<=/start )\S+",  # invite codes
        r"(?<=/bind )\S+",
        r"examples/zone\.yaml",
        r"/[\w./-]+",  # commands and paths
        r"[A-Z]{2}-\d{4}-\d{4}",  # ticket numbers
        r"\bSquadBot\b",  # the bot's own name
        r"\bBot API\b",
        r"\bticketevent\b",  # the table holding the history, named in the footer
        r"\d+kV",  # what the enterprise typed
    )
    for pattern in allowed:
        text = re.sub(pattern, "", text)
    assert re.findall(r"[A-Za-z]{3,}", text) == []


def test_the_sandbox_never_reads_squadbot_zone_file(chinese: Played) -> None:
    assert chinese.zone_file is not None and chinese.zone_file.name == "broken-zone.yaml"
    assert chinese.code == 0
    assert "扬中晶曜新能源科技有限公司" in chinese.text  # the example zone's own enterprise


def test_the_people_speak_the_readers_language(english: Played) -> None:
    text = "\n".join(english.entries)
    assert t("en", "demo.line.water_report") in text
    assert fragment("en", "ticket.card") in text  # the squad's group gets English too
    assert fragment("en", "alert.supervision") in text  # and so do the managers


def test_the_story_shows_the_plan_promise_with_its_deadline(played: Played) -> None:
    lang, text = played.lang, played.text
    ticket = played.tickets()[1]
    due = format_time(ticket.created_at + timedelta(days=1), lang, TZ)  # the third promise
    assert f"/needplan {ticket.number}" in text
    told = [e for e in played.entries if fragment(lang, "plan.required") in e]
    assert len(told) == 1 and ticket.number in told[0] and due in told[0]
    assert re.search(rf"/plan {ticket.number} \d{{4}}-\d{{2}}-\d{{2}} ", text)
    head = max(re.split(r"\{\w+\}", t(lang, "plan.recorded").split("\n")[0]), key=len)
    recorded = [e for e in played.entries if head in e]
    assert len(recorded) == 2  # to the enterprise and in the squad's group
    assert any(t(lang, "demo.line.plan") in e for e in recorded)
    assert any(fragment(lang, "demo.note_plan") in e for e in played.entries)


def test_the_story_explains_the_urgent_water_deadlines(played: Played) -> None:
    lang = played.lang
    water = played.tickets()[0]
    reply_by = format_time(water.created_at + timedelta(minutes=5), lang, TZ)
    handle_by = format_time(water.created_at + timedelta(hours=1), lang, TZ)
    ack = next(e for e in played.entries if fragment(lang, "ticket.filed") in e)
    assert water.number in ack and reply_by in ack and handle_by in ack
    note = next(e for e in played.entries if fragment(lang, "demo.note_urgent") in e)
    durations = {"en": ("5 minutes", "1 hour", "10 minutes", "2 hours")}
    expected = durations.get(lang, ("5分钟", "1小时", "10分钟", "2小时"))
    assert all(part in note for part in expected), note


def test_answers_come_after_what_they_answer(played: Played) -> None:
    lang, entries = played.lang, played.entries
    headings = [entries.index(t(lang, k)) for k in ("demo.scene_plan", "demo.scene_escalation")]
    numbers = [ticket.number for ticket in played.tickets()]
    # nothing about a scene's ticket spills into the next scene (the footer names them all)
    assert not any(numbers[0] in entry for entry in entries[headings[0] : -1])
    assert not any(numbers[1] in entry for entry in entries[headings[1] : -1])
    # the bot's answer in a chat comes right after the person's message or button there
    said = t(lang, "demo.line.water_thanks")
    asked = next(i for i, entry in enumerate(entries) if entry.endswith(said))
    assert fragment(lang, "thread.sent_to_squad") in entries[asked + 1]
    tapped = fragment(lang, "demo.pressed")
    rated = next(i for i, e in enumerate(entries) if tapped in e and e.endswith("[★5]"))
    assert t(lang, "rate.recorded_short") in entries[rated + 1]
    assert fragment(lang, "rate.thanks") in entries[rated + 2]


def test_emulator_lines_are_reworded_for_the_reader() -> None:
    # the emulator's own shapes, as its transcript test pins them
    assert localise("[Squad A] 波 pressed [认领]", "zh-CN") == "[Squad A] 波 点击了 [认领]"
    assert localise("  (toast to 波) 已认领", "zh-CN") == "  ↳ 给 波 的提示：已认领"
    assert localise("[Squad A] SquadBot (edited): 工单 #1", "zh-CN") == (
        "[Squad A] SquadBot 更新了消息：工单 #1"
    )
    assert localise("[Squad A] Alice Wang: [photo] 现场", "zh-CN") == (
        "[Squad A] Alice Wang：[照片] 现场"
    )
    assert localise("something else", "en") == "something else"


def test_ctrl_c_stops_it_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SQUADBOT_DATA_DIR": str(tmp_path / "data"),
        "SQUADBOT_LANGUAGE": "en",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SQUADBOT_TELEGRAM_TOKEN", None)
    command = [sys.executable, "-m", "bot.cli", "sandbox"]
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()  # the demo is under way and has taken over Ctrl-C
        assert first.startswith("Sandbox demo"), first
        child.send_signal(signal.SIGINT)
        rest, errors = child.communicate(timeout=60)
    assert child.returncode == 130
    assert "Traceback" not in errors, errors
    assert rest.splitlines()[-1] == t("en", "demo.interrupted")
    assert rest.count(t("en", "demo.interrupted")) == 1
