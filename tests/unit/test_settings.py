"""Settings from SQUADBOT_* variables (defaults, .env, one line naming a bad value) and the
`squadbot` command: db upgrade, org load/show/schema (invites: test_cli_invites.py)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.cli import main
from bot.settings import TELEGRAM_API, SettingsError, load_settings
from migrations.runner import current
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
    assert settings.timezone == "Asia/Shanghai"
    assert settings.language == "zh-CN"


def test_good_values_are_taken_and_tidied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", f" {TOKEN} ")
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", "postgresql://squad@db.local/zone")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", "socks5://127.0.0.1:1080")
    monkeypatch.setenv("SQUADBOT_TIMEZONE", "Asia/Urumqi")
    monkeypatch.setenv("SQUADBOT_LANGUAGE", "en")
    settings = load_settings()
    assert settings.telegram_token == TOKEN
    assert settings.database_url == "postgresql+psycopg://squad@db.local/zone"
    assert settings.bot_api_base == "http://127.0.0.1:8081/bot"
    assert settings.proxy_url == "socks5://127.0.0.1:1080"
    assert (settings.timezone, settings.language) == ("Asia/Urumqi", "en")


def test_empty_token_and_proxy_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", "")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", "  ")
    settings = load_settings()
    assert settings.telegram_token is None and settings.proxy_url is None


def test_a_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SQUADBOT_LANGUAGE=en\nSQUADBOT_TIMEZONE=UTC\n")
    monkeypatch.setenv("SQUADBOT_TIMEZONE", "Asia/Shanghai")  # the environment wins
    settings = load_settings()
    assert settings.language == "en" and settings.timezone == "Asia/Shanghai"


MALFORMED = [
    ("SQUADBOT_TELEGRAM_TOKEN", "not-a-token"),
    ("SQUADBOT_TELEGRAM_TOKEN", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("SQUADBOT_TELEGRAM_TOKEN", "123456789:short"),
    ("SQUADBOT_DATABASE_URL", "mysql://root@localhost/zone"),
    ("SQUADBOT_DATABASE_URL", "squadbot.db"),
    ("SQUADBOT_TELEGRAM_API_URL", "api.telegram.org"),
    ("SQUADBOT_PROXY_URL", "socks4://127.0.0.1:1080"),
    ("SQUADBOT_PROXY_URL", "127.0.0.1:7890"),
    ("SQUADBOT_TIMEZONE", "Asia/Beijing"),
    ("SQUADBOT_TIMEZONE", "../../etc/passwd"),
    ("SQUADBOT_LANGUAGE", "fr"),
    ("SQUADBOT_LONG_POLL_SECONDS", "soon"),
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


def test_a_missing_zone_file_at_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_ZONE_FILE", "no/such/zone.yaml")
    code, _out, err = run(capsys, "run")
    assert code == 2
    lines = [line for line in err.strip().splitlines() if "alembic" not in line]
    assert len(lines) == 1 and "SQUADBOT_ZONE_FILE" in lines[0] and "zone.yaml" in lines[0]


# --- the command ----------------------------------------------------------------------------
def test_db_upgrade(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "newest schema" in out
    engine = make_engine(db_url)
    try:
        assert current(engine) is not None
    finally:
        engine.dispose()
    assert run(capsys, "db", "upgrade")[0] == 0  # again: nothing to do


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
    code, shown, _ = run(capsys, "org", "show", "--json")
    assert code == 0 and json.loads(shown)["projects"] == []

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


def test_org_schema_prints_the_committed_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "org", "schema")
    assert code == 0
    assert out == (ROOT / "docs" / "zone.schema.json").read_text(encoding="utf-8")
    assert json.loads(out)["required"] == ["zone"]
