"""Settings from SQUADBOT_* variables (defaults, .env, every bad value named at once, one
line each) and the `squadbot` command: the database line, db upgrade, org load/show/schema,
read-only commands refusing a missing database, --help. `invite` and `people`:
test_cli_invites.py."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.cli import main, parser
from bot.commands.common import head_revision
from bot.settings import SETTINGS, TELEGRAM_API, SettingsError, load_settings
from migrations.runner import current, upgrade
from models.db import make_engine
from models.org import Project, Squad

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ZONE = ROOT / "examples" / "zone.yaml"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SQUADBOT_* from the outside world, and a working directory without a .env."""
    for name in list(os.environ):
        if name.startswith("SQUADBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def db_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- settings -------------------------------------------------------------------------------
def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.telegram_token is None
    assert settings.database_url == f"sqlite:///{tmp_path / 'squadbot.db'}"
    assert settings.telegram_api_url == TELEGRAM_API
    assert settings.bot_api_base == f"{TELEGRAM_API}/bot"
    assert settings.bot_file_base == f"{TELEGRAM_API}/file/bot"
    assert settings.proxy_url is None
    assert settings.language == "zh-CN"
    assert (settings.log_level, settings.log_file, settings.retry_start) == ("INFO", None, False)


def test_good_values_are_taken_and_tidied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", f" {TOKEN} ")
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", "postgresql://squad@db.local/zone")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", "socks5://127.0.0.1:1080")
    monkeypatch.setenv("SQUADBOT_LANGUAGE", "en")
    monkeypatch.setenv("SQUADBOT_LOG_LEVEL", "debug")
    monkeypatch.setenv("SQUADBOT_RETRY_START", "true")
    settings = load_settings()
    assert settings.telegram_token == TOKEN
    assert settings.database_url == "postgresql+psycopg://squad@db.local/zone"
    assert settings.bot_api_base == "http://127.0.0.1:8081/bot"
    assert settings.proxy_url == "socks5://127.0.0.1:1080"
    assert (settings.language, settings.log_level, settings.retry_start) == ("en", "DEBUG", True)


def test_empty_token_and_proxy_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", "")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", "  ")
    settings = load_settings()
    assert settings.telegram_token is None and settings.proxy_url is None


def test_a_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SQUADBOT_LANGUAGE=en\nSQUADBOT_LONG_POLL_SECONDS=5\n")
    monkeypatch.setenv("SQUADBOT_LONG_POLL_SECONDS", "7")  # the environment wins
    settings = load_settings()
    assert settings.language == "en" and settings.long_poll_seconds == 7


MALFORMED = [
    ("SQUADBOT_TELEGRAM_TOKEN", "not-a-token"),
    ("SQUADBOT_TELEGRAM_TOKEN", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("SQUADBOT_TELEGRAM_TOKEN", "123456789:short"),
    ("SQUADBOT_DATABASE_URL", "mysql://root@localhost/zone"),
    ("SQUADBOT_DATABASE_URL", "squadbot.db"),
    ("SQUADBOT_TELEGRAM_API_URL", "api.telegram.org"),
    ("SQUADBOT_TELEGRAM_API_URL", "https://api.telegram.org/bot"),
    ("SQUADBOT_PROXY_URL", "socks4://127.0.0.1:1080"),
    ("SQUADBOT_PROXY_URL", "127.0.0.1:7890"),
    ("SQUADBOT_LANGUAGE", "fr"),
    ("SQUADBOT_LONG_POLL_SECONDS", "soon"),
    ("SQUADBOT_LONG_POLL_SECONDS", "-1"),
    ("SQUADBOT_RETRY_START", "perhaps"),
    ("SQUADBOT_LOG_LEVEL", "loud"),
    ("SQUADBOT_LOG_FILE", "/no/such/folder/squadbot.log"),
]


@pytest.mark.parametrize(("name", "value"), MALFORMED)
def test_a_malformed_variable_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    assert len(message) > len(name) + 5


@pytest.mark.parametrize(("name", "value"), MALFORMED)
def test_the_command_stops_with_that_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    if name != "SQUADBOT_DATABASE_URL":
        monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"squadbot: {name}: ")
    assert not (tmp_path / "cli.db").exists()


def test_every_bad_setting_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SQUADBOT_LOG_LEVEL", "loud")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN[:-20])
    monkeypatch.setenv("SQUADBOT_LANGUAGE", "fr")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", "127.0.0.1:7890")
    monkeypatch.setenv("SQUADBOT_ZONE_FILE", "no/such/zone.yaml")
    code, out, err = run(capsys, "run")
    assert code == 2 and out == ""
    assert err.splitlines() == [  # in the order of the README's table
        "squadbot: SQUADBOT_TELEGRAM_TOKEN: expected the form 123456789:AA... from @BotFather",
        "squadbot: SQUADBOT_PROXY_URL: expected http://HOST:PORT or socks5://HOST:PORT",
        "squadbot: SQUADBOT_LANGUAGE: expected zh-CN or en",
        "squadbot: SQUADBOT_ZONE_FILE: no/such/zone.yaml: no such file",
        "squadbot: SQUADBOT_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR",
    ]
    assert TOKEN[:-20] not in err
    assert not (tmp_path / "squadbot.db").exists()


def test_a_missing_zone_file_at_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_ZONE_FILE", "no/such/zone.yaml")
    code, _out, err = run(capsys, "run")
    assert code == 2
    assert err == "squadbot: SQUADBOT_ZONE_FILE: no/such/zone.yaml: no such file\n"


def test_a_bad_zone_file_at_start_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "zone.yaml"
    bad.write_text("zone:\n  code: [\n", encoding="utf-8")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_ZONE_FILE", str(bad))
    code, _out, err = run(capsys, "run")
    assert code == 2
    assert err.splitlines()[-1].startswith(f"squadbot: SQUADBOT_ZONE_FILE: {bad}:")
    assert "Traceback" not in err and TOKEN not in err


# --- the time zone: the zone file's, and only that --------------------------------------------
def test_squadbot_timezone_is_not_used_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    """One source of truth: the zone file's `timezone`. SQUADBOT_TIMEZONE, once documented,
    is named in a warning on every command instead of being ignored silently."""
    assert run(capsys, "org", "load", str(EXAMPLE_ZONE))[0] == 0
    monkeypatch.setenv("SQUADBOT_TIMEZONE", "Asia/Urumqi")
    code, out, err = run(capsys, "org", "show", "--json")
    assert code == 0 and json.loads(out)["zone"]["timezone"] == "Asia/Shanghai"
    assert err.splitlines()[0] == (
        "squadbot: warning: SQUADBOT_TIMEZONE is not used: the time zone is `timezone:` under "
        "`zone:` in the zone file (default Asia/Shanghai); remove SQUADBOT_TIMEZONE"
    )


def test_the_zone_files_timezone_is_the_one_in_force(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    text = EXAMPLE_ZONE.read_text(encoding="utf-8")
    assert "timezone: Asia/Shanghai" in text
    urumqi = tmp_path / "urumqi.yaml"
    urumqi.write_text(text.replace("timezone: Asia/Shanghai", "timezone: Asia/Urumqi"), "utf-8")
    assert run(capsys, "org", "load", str(urumqi))[0] == 0
    code, out, _ = run(capsys, "org", "show")
    assert code == 0 and "time zone:         Asia/Urumqi" in out


def test_a_misspelt_setting_is_pointed_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SQUADBOT_PROXY", "socks5://127.0.0.1:1080")
    code, _out, err = run(capsys, "org", "schema")
    assert code == 0
    assert err == (
        "squadbot: warning: SQUADBOT_PROXY is not a setting (did you mean SQUADBOT_PROXY_URL?)\n"
    )


# --- the command ----------------------------------------------------------------------------
def test_db_upgrade(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    engine = make_engine(db_url)
    head = head_revision(engine)
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 0 and out == f"database is at the newest schema ({head})\n"
    assert err.splitlines() == [
        f"squadbot: database {db_url}",
        f"squadbot: database migrated from empty to schema {head}",
    ]
    try:
        assert current(engine) == head
    finally:
        engine.dispose()
    code, out, err = run(capsys, "db", "upgrade")  # again: nothing to do, nothing said
    assert code == 0 and err.splitlines() == [f"squadbot: database {db_url}"]


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "upgrade"],
        ["org", "load", str(EXAMPLE_ZONE)],
        ["org", "show"],
        ["org", "show", "--json"],
        ["invite", "--role", "group", "--squad", "PV"],
        ["inbox", "dead"],
    ],
)
def test_every_command_names_its_database_first(
    capsys: pytest.CaptureFixture[str], db_url: str, argv: list[str]
) -> None:
    assert main(["org", "load", str(EXAMPLE_ZONE)]) == 0
    capsys.readouterr()
    code, _out, err = run(capsys, *argv)
    assert code == 0 and err.splitlines()[0] == f"squadbot: database {db_url}"


def test_the_database_password_is_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", "postgresql://squad:pw-secret@127.0.0.1:1/zone")
    code, _out, err = run(capsys, "org", "show")
    assert code == 3
    assert (
        err.splitlines()[0] == "squadbot: database postgresql+psycopg://squad:***@127.0.0.1:1/zone"
    )
    assert "pw-secret" not in err


READ_ONLY = [
    ["org", "show"],
    ["org", "show", "--json"],
    ["invite", "--role", "enterprise", "--project", "PV01"],
    ["invite", "list"],
    ["invite", "revoke", "CODE"],
    ["people"],
    ["inbox", "dead"],
    ["inbox", "retry", "1"],
]


@pytest.mark.parametrize("argv", READ_ONLY)
def test_read_only_commands_refuse_a_database_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path, argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"squadbot: database {db_url}",
        f"squadbot: no database at {tmp_path / 'cli.db'} (SQUADBOT_DATABASE_URL): point "
        "SQUADBOT_DATABASE_URL at the bot's database, or create one with `squadbot org load "
        "ZONE_FILE`",
    ]
    assert not (tmp_path / "cli.db").exists()


@pytest.mark.parametrize("argv", READ_ONLY[:3])
def test_read_only_commands_refuse_a_database_without_a_zone(
    capsys: pytest.CaptureFixture[str], db_url: str, argv: list[str]
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == (
        f"squadbot: no zone is loaded in the database {db_url}: load one with `squadbot org "
        "load ZONE_FILE`, or check SQUADBOT_DATABASE_URL"
    )


def test_read_only_commands_do_not_migrate(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0003")
        head = head_revision(engine)
    finally:
        engine.dispose()
    code, _out, err = run(capsys, "org", "show")
    assert code == 2
    assert err.splitlines()[-1] == (
        f"squadbot: the database {db_url} is at schema 0003, this squadbot needs {head}: run "
        "`squadbot db upgrade` (or `squadbot run`, which migrates)"
    )


def test_org_load_twice_is_idempotent(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, _ = run(capsys, "org", "load", str(EXAMPLE_ZONE))
    assert code == 0 and re.search(r"squad: 8 created", out), out
    code, first, _ = run(capsys, "org", "show", "--json")
    assert code == 0

    code, out, _ = run(capsys, "org", "load", str(EXAMPLE_ZONE))
    assert code == 0 and out.strip() == "nothing changed"
    code, second, _ = run(capsys, "org", "show", "--json")
    assert code == 0 and json.loads(second) == json.loads(first)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            assert len(session.exec(select(Squad)).all()) == 8
            assert len(session.exec(select(Project)).all()) == 8
    finally:
        engine.dispose()


def test_a_bad_zone_file_exits_2_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    lines = EXAMPLE_ZONE.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("invite_ttl:"))
    lines[at] = "  invite_ttl: seven days"
    bad = tmp_path / "bad-zone.yaml"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = run(capsys, "org", "load", str(bad))
    assert code == 2 and out == ""
    assert f"{bad}:{at + 1}:" in err and "invite_ttl" in err
    # refused as a whole: nothing of it was loaded
    code, shown, err = run(capsys, "org", "show", "--json")
    assert code == 2 and shown == "" and "no zone is loaded" in err

    code, _, err = run(capsys, "org", "load", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err


def test_org_show_json_masks_phones(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    assert run(capsys, "org", "load", str(EXAMPLE_ZONE))[0] == 0
    code, out, _ = run(capsys, "org", "show", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"projects", "squads", "people", "categories"} <= set(data)
    zhou = next(p for p in data["people"] if p["key"] == "zhou.jun")
    assert zhou["phone"] == "138****8015" and zhou["name"] == "周军"
    phones = re.findall(r"1[3-9]\d{9}", EXAMPLE_ZONE.read_text(encoding="utf-8"))
    assert phones and not any(phone in out for phone in phones)
    assert "+85291234567" not in out
    pv = next(s for s in data["squads"] if s["code"] == "PV")
    assert pv["lead"] == ["liu.yang"] and "PV01" in pv["projects"]
    assert any(c["code"] == "water" and c["zh"] == "临时停水" for c in data["categories"])


def scalars(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        for item in value.values():
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    else:
        yield value


def test_org_show_text_holds_everything_the_json_does(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert run(capsys, "org", "load", str(EXAMPLE_ZONE))[0] == 0
    data = json.loads(run(capsys, "org", "show", "--json")[1])
    code, text, _ = run(capsys, "org", "show")
    assert code == 0
    for value in scalars(data):
        if isinstance(value, str):
            assert value in text, value
    for section in ("projects", "squads", "people", "managers", "categories", "deadlines"):
        assert f"\n{section} ({len(data[section])})" in text
    lines = text.splitlines()
    zhou = next(line for line in lines if line.strip().startswith("zhou.jun "))
    assert "周军, phone 138****8015" in zhou and "member:PV" in zhou
    assert "Telegram not bound; from the zone file" in zhou
    pv = lines[lines.index(next(x for x in lines if x.startswith("  PV "))) + 1]
    assert "lead liu.yang;" in pv and "group not bound" in pv
    top = next(m for m in data["managers"] if m["top"])
    assert any(x.strip().startswith(top["person"]) and "[top" in x for x in lines)
    assert "managers' chat:    not bound" in text
    assert not re.search(r"1[3-9]\d{9}", text)  # phones stay masked


def test_help_on_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command has a description, every option a help text, and the epilog lists the
    environment variables the command reads."""
    import argparse

    def walk(p: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, [*path, name])

    commands = list(walk(parser(), []))
    assert len(commands) >= 12
    for path, p in commands:
        assert p.description, path
        assert p.epilog and "SQUADBOT_LOG_LEVEL" in p.epilog and "exit codes:" in p.epilog, path
        for action in p._actions:
            assert action.help, (path, action.dest)
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: squadbot") and "environment" in out
    top = parser().format_help()
    for setting in SETTINGS:
        assert setting.name in top
    run_help = next(p for path, p in commands if path == ["run"]).format_help()
    assert "--retry-start" in run_help and "SQUADBOT_PROXY_URL" in run_help


def test_a_lease_is_between_a_second_and_an_hour(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_settings().lease_seconds == 30
    monkeypatch.setenv("SQUADBOT_LEASE_SECONDS", "3")
    assert load_settings().lease_seconds == 3
    for wrong in ("0.5", "7200", "soon"):
        monkeypatch.setenv("SQUADBOT_LEASE_SECONDS", wrong)
        code, _out, err = run(capsys, "db", "upgrade")
        assert code == 2 and err.startswith("squadbot: SQUADBOT_LEASE_SECONDS: "), err
        assert len(err.splitlines()) == 1


def test_the_sending_pace_is_a_message_a_second_at_least(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_settings().send_per_second == 30
    monkeypatch.setenv("SQUADBOT_SEND_PER_SECOND", "12.5")
    assert load_settings().send_per_second == 12.5
    for wrong in ("0", "0.5", "-3", "fast"):
        monkeypatch.setenv("SQUADBOT_SEND_PER_SECOND", wrong)
        code, _out, err = run(capsys, "db", "upgrade")
        assert code == 2 and err.startswith("squadbot: SQUADBOT_SEND_PER_SECOND: "), err
        assert len(err.splitlines()) == 1


def test_run_only_names_its_roles(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.commands.run import roles_of

    assert roles_of("outbox") == {"outbox"}
    assert roles_of("updates, timer") == {"updates", "timer"}
    args = parser().parse_args(["run", "--only", "updates,outbox"])
    assert args.only == {"updates", "outbox"}
    assert parser().parse_args(["run"]).only is None  # all three
    for wrong in ("mail", "updates,mail", ","):
        with pytest.raises(SystemExit) as done:
            parser().parse_args(["run", "--only", wrong])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "expected one or more of updates, outbox, timer" in err


def test_the_readme_lists_every_setting_and_the_sandbox() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in readme, setting.name
    assert "| `SQUADBOT_TIMEZONE` |" not in readme
    assert "squadbot sandbox" in readme and "--retry-start" in readme


def test_org_schema_prints_the_committed_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "org", "schema")
    assert code == 0
    assert out == (ROOT / "docs" / "zone.schema.json").read_text(encoding="utf-8")
    assert json.loads(out)["required"] == ["zone"]
