"""SQUADBOT_LOG_FORMAT=json: every line on stderr and in the log file is one JSON object with
time, level, logger and message, the update, chat and ticket it is about while they are
known, a traceback when there is one; and the token never appears, whatever carries it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot import logs
from bot.cli import main
from models.log_context import about, about_ticket, current

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = TOKEN.partition(":")[2]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_say_what_they_are_about_and_never_hold_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.add_secret(TOKEN)
    log_file = tmp_path / "json.log"
    with logs.configured("DEBUG", log_file, service=True, json_lines=True):
        assert logs.writes_json()
        logging.getLogger("httpx").info('HTTP Request: POST http://x/bot%s/getMe "200 OK"', TOKEN)
        with about(update_id=42, chat=7001):
            logging.getLogger("bot.inbox.runner").warning("handling %s", "an update")
            about_ticket("YZ-2611-0042")  # the desk recorded a change of this ticket
            try:
                raise RuntimeError(f"rejected: {TOKEN}")
            except RuntimeError:
                logging.getLogger("telegram").exception("failed with the secret %s", SECRET)
        logging.getLogger("bot.service").info("after the update")
    assert not logs.writes_json()
    err = capsys.readouterr().err
    written = log_file.read_text(encoding="utf-8")
    assert TOKEN not in err + written and SECRET not in err + written
    for lines in (json_lines(err), json_lines(written)):
        assert [(e["level"], e["logger"]) for e in lines] == [
            ("INFO", "httpx"),
            ("WARNING", "bot.inbox.runner"),
            ("ERROR", "telegram"),
            ("INFO", "bot.service"),
        ]
        request, handling, failure, after = lines
        assert all(e["time"].endswith("+00:00") and "T" in e["time"] for e in lines)
        assert request["message"] == 'HTTP Request: POST http://x/bot123456789:***/getMe "200 OK"'
        assert "update_id" not in request and "chat" not in request
        assert handling["message"] == "handling an update"
        assert (handling["update_id"], handling["chat"]) == (42, 7001)
        assert "ticket" not in handling
        assert failure["ticket"] == "YZ-2611-0042" and failure["update_id"] == 42
        assert "RuntimeError: rejected: 123456789:***" in failure["traceback"]
        assert failure["message"] == "failed with the secret ***"
        assert not {"update_id", "chat", "ticket"} & set(after)  # the update is over


def test_a_ticket_named_outside_a_scope_is_not_carried_into_later_lines() -> None:
    """Work outside any update or message (a scheduler thread that goes on to other jobs)
    names no ticket, and a scope starts with none."""
    about_ticket("YZ-2611-0001")
    assert current() == {}
    with about(update_id=7):
        assert current() == {"update_id": 7}
        about_ticket("YZ-2611-0002")
        with about(chat=5):  # a scope inside another is about its own fields only
            assert current() == {"chat": 5}
        assert current() == {"update_id": 7, "ticket": "YZ-2611-0002"}
    assert current() == {}


def test_a_failing_command_ends_in_a_json_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import bot.commands.db

    def broken(_settings: object, _args: object) -> int:
        raise RuntimeError(f"something odd near /bot{TOKEN}/getMe")

    monkeypatch.setattr(bot.commands.db, "cmd_db_upgrade", broken)
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_LOG_FORMAT", "json")
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.delenv("SQUADBOT_LOG_FILE", raising=False)
    assert main(["db", "upgrade"]) == 1
    out, err = capsys.readouterr()
    lines = json_lines(err)  # every line parses: no plain `squadbot: ...` line among them
    assert lines[-1]["level"] == "ERROR" and lines[-1]["logger"] == "squadbot"
    assert lines[-1]["message"].startswith("unexpected error: RuntimeError: something odd near")
    assert "/bot123456789:***/getMe" in lines[-1]["message"]
    assert TOKEN not in out + err and SECRET not in out + err


def test_an_unknown_log_format_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SQUADBOT_LOG_FORMAT", "xml")
    assert main(["db", "upgrade"]) == 2
    assert capsys.readouterr().err == "squadbot: SQUADBOT_LOG_FORMAT: expected text or json\n"
