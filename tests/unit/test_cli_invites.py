"""`squadbot invite` (make, list, revoke) and `squadbot people`: the domain's rules worded for
a terminal, one line per refusal, and an invite either written and printed or not written."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from bot.cli import main
from models.db import make_engine
from models.invites import create_invite
from models.org import Membership, Person
from models.plumbing import Invite

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ZONE = ROOT / "examples" / "zone.yaml"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SHANGHAI = ZoneInfo("Asia/Shanghai")


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
    assert main(["org", "load", str(EXAMPLE_ZONE)]) == 0
    return url


@pytest.fixture
def named_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADBOT_BOT_USERNAME", "@yz_squad_bot")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def problem(err: str, db_url: str) -> str:
    """The one line a refused command says after naming its database."""
    lines = err.splitlines()
    assert lines[0] == f"squadbot: database {db_url}" and len(lines) == 2, err
    assert lines[1].startswith("squadbot: invite: "), err
    return lines[1].removeprefix("squadbot: invite: ")


def invites(db_url: str) -> list[Invite]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Invite)).all())
    finally:
        engine.dispose()


# --- making one -----------------------------------------------------------------------------
def test_an_invite_prints_a_link_to_the_configured_bot_and_the_bare_code(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    code, out, _ = run(
        capsys, "invite", "--role", "enterprise", "--project", "PV01", "--person", "qian.hao"
    )
    assert code == 0
    bare = out.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{12,32}", bare)
    assert f"https://t.me/yz_squad_bot?start={bare}" in out
    [row] = invites(db_url)
    assert (row.code, row.role, row.person_key, row.used_at) == (
        bare,
        "enterprise",
        "qian.hao",
        None,
    )
    local = row.expires_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert f"(valid until {local})" in out


def test_a_walk_in_enterprise_invite_needs_no_project(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    code, out, _ = run(capsys, "invite", "--role", "enterprise")
    assert code == 0 and "t.me/yz_squad_bot" in out
    [row] = invites(db_url)
    assert (row.project_id, row.person_key) == (None, None)


def test_a_group_invite_prints_the_bind_command_and_needs_no_username(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    code, out, _ = run(capsys, "invite", "--role", "group", "--squad", "PV")
    assert code == 0
    bare = out.strip().splitlines()[-1]
    assert f"/bind {bare}" in out and "t.me" not in out
    [row] = invites(db_url)
    assert row.role == "group" and row.squad_id is not None


def test_without_a_token_or_username_nothing_is_written_and_the_reason_is_said(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    code, out, err = run(
        capsys, "invite", "--role", "member", "--squad", "PV", "--person", "xu.hui"
    )
    assert code == 2 and out == "" and "t.me" not in err
    assert problem(err, db_url) == (
        "the link needs the bot's username: set SQUADBOT_BOT_USERNAME (or "
        "SQUADBOT_TELEGRAM_TOKEN, to ask the Bot API for it); no invite was written"
    )
    assert invites(db_url) == []


def test_an_unreachable_api_writes_nothing(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", "http://127.0.0.1:9")  # nobody listens
    code, out, err = run(capsys, "invite", "--role", "manager", "--person", "wang.fang")
    assert code == 3 and out == ""  # 3: trying again later may work
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0] == f"squadbot: database {db_url}"
    assert lines[1].startswith("squadbot: cannot reach the Bot API at http://127.0.0.1:9: ")
    assert invites(db_url) == []


class _GetMe(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = {
            "ok": True,
            "result": {"id": 42, "is_bot": True, "first_name": "专班", "username": "api_named_bot"},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, *_args: object) -> None:
        pass


def test_with_a_token_the_username_is_asked_from_the_api(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GetMe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
        monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", f"http://127.0.0.1:{server.server_port}")
        code, out, _ = run(capsys, "invite", "--role", "admin", "--person", "qiu.ping")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    assert f"https://t.me/api_named_bot?start={out.strip().splitlines()[-1]}" in out


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--role", "member"], "Invite (member): --squad is missing."),
        (["--role", "member", "--squad", "PV"], "Invite (member): --person is missing."),
        (["--role", "manager"], "Invite (manager): --person is missing."),
        (
            ["--role", "manager", "--person", "wang.fang", "--project", "PV01"],
            "Invite (manager): --project does not belong on it.",
        ),
        (
            ["--role", "group", "--squad", "PV", "--person", "liu.yang"],
            "Invite (group): --person does not belong on it.",
        ),
        (
            ["--role", "enterprise", "--project", "PV01"],
            "An enterprise invite for project PV01 names one of its contacts: qian.hao, shi.lei.",
        ),
        (
            ["--role", "enterprise", "--project", "PV01", "--person", "zhou.jun"],
            '"zhou.jun" is zone staff and can never be bound as an enterprise contact.',
        ),
        (
            ["--role", "lead", "--squad", "PV", "--person", "zhou.jun"],
            '"zhou.jun" is not the lead of squad PV in the zone file.',
        ),
        (
            ["--role", "member", "--squad", "PV", "--person", "qian.hao"],
            '"qian.hao" is an enterprise contact and can never be bound as zone staff.',
        ),
        (["--role", "lead", "--squad", "NOPE", "--person", "x"], 'There is no squad "NOPE"'),
        (["--role", "member", "--squad", "PV", "--person", "no.one"], 'no person "no.one"'),
        ([], "--role is required to make an invite (or: invite list, invite revoke CODE)"),
        (["--role", "manager", "list"], "'invite list' takes no --role"),
    ],
)
def test_a_bad_invite_exits_2_with_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    named_bot: None,
    argv: list[str],
    complaint: str,
) -> None:
    code, out, err = run(capsys, "invite", *argv)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line != f"squadbot: database {db_url}"]
    assert len(lines) == 1 and lines[0].startswith("squadbot: invite: "), err
    assert complaint in lines[0]
    assert invites(db_url) == []


# --- listing and revoking -------------------------------------------------------------------
def make(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, "invite", *argv)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def test_invite_list_shows_the_open_invites_in_zone_time(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    code, out, _ = run(capsys, "invite", "list")
    assert code == 0 and out == "0 open invite(s)\n"

    member = make(capsys, "--role", "member", "--squad", "PV", "--person", "zhou.jun")
    walk_in = make(capsys, "--role", "enterprise")
    group = make(capsys, "--role", "group", "--squad", "HV")
    used = make(capsys, "--role", "manager", "--person", "wang.fang")
    engine = make_engine(db_url)
    with Session(engine) as session:
        row = session.exec(select(Invite).where(Invite.code == used)).one()
        row.used_at = datetime.now(UTC)
        session.add(row)
        old = create_invite(
            session,
            datetime.now(UTC) - timedelta(days=8),
            role="enterprise",
            ttl=timedelta(days=7),
        )
        session.commit()
        expires = {i.code: i.expires_at for i in session.exec(select(Invite)).all()}
    engine.dispose()

    code, out, _ = run(capsys, "invite", "list")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "CODE",
        "ROLE",
        "SQUAD/PROJECT",
        "PERSON",
        "EXPIRES",
        "(Asia/Shanghai)",
    ]
    assert lines[-1] == "3 open invite(s)"
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == {member, walk_in, group} and used not in rows and old.code not in rows
    local = expires[member].astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M").split()
    assert rows[member] == [member, "member", "PV", "zhou.jun", *local]
    assert rows[walk_in][1:4] == ["enterprise", "-", "(walk-in)"]
    assert rows[group][1:4] == ["group", "HV", "-"]


def test_invite_list_flags_an_invite_the_zone_no_longer_allows(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None, tmp_path: Path
) -> None:
    wu = make(capsys, "--role", "member", "--squad", "PV", "--person", "wu.gang")
    text = EXAMPLE_ZONE.read_text(encoding="utf-8").replace(", wu.gang]", "]")
    (tmp_path / "zone.yaml").write_text(text, encoding="utf-8")
    assert run(capsys, "org", "load", str(tmp_path / "zone.yaml"))[0] == 0

    code, out, _ = run(capsys, "invite", "list")

    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith(wu)]
    assert line.endswith('no longer valid: "wu.gang" is not a member of squad PV in the zone file.')


def test_invite_revoke_makes_the_code_unknown(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    code_ = make(capsys, "--role", "member", "--squad", "PV", "--person", "zhou.jun")
    code, out, _ = run(capsys, "invite", "revoke", code_)
    assert code == 0 and out == f"invite {code_} revoked: the code is now unknown to the bot\n"
    assert invites(db_url) == []
    assert run(capsys, "invite", "list")[1] == "0 open invite(s)\n"

    code, out, err = run(capsys, "invite", "revoke", code_)
    assert code == 2 and out == ""
    assert problem(err, db_url) == f"no invite '{code_}' (see `squadbot invite list`)"


def test_a_used_invite_is_not_revoked(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    used = make(capsys, "--role", "enterprise")
    engine = make_engine(db_url)
    with Session(engine) as session:
        row = session.exec(select(Invite).where(Invite.code == used)).one()
        row.used_at = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
        session.add(row)
        session.commit()
    engine.dispose()
    code, out, err = run(capsys, "invite", "revoke", used)
    assert code == 2 and out == ""
    said = problem(err, db_url)
    assert "was already used (2026-11-23 01:00 UTC)" in said
    assert "take the person out of the zone file" in said
    assert len(invites(db_url)) == 1


# --- people ---------------------------------------------------------------------------------
def test_people_shows_who_is_bound_to_what_and_who_has_not_joined(
    capsys: pytest.CaptureFixture[str], db_url: str, named_bot: None
) -> None:
    make(capsys, "--role", "member", "--squad", "PV", "--person", "xu.hui")
    engine = make_engine(db_url)
    with Session(engine) as session:
        for key, user in (("liu.yang", 9001), ("qian.hao", 9002), ("wang.fang", 9003)):
            person = session.exec(select(Person).where(Person.key == key)).one()
            person.telegram_user_id = user
            session.add(person)
        newcomer = Person(key="tg9004", name="赵总", telegram_user_id=9004)
        session.add(newcomer)
        session.flush()
        session.add(Membership(person_id=newcomer.id or 0, role="enterprise", source="invite"))
        session.commit()
        invite = session.exec(select(Invite)).one()
    engine.dispose()
    code, out, _ = run(capsys, "people")

    assert code == 0
    blocks = out.split("\n")
    pv = blocks.index("squad PV  光伏组件项目服务专班  (no group bound)")
    until = invite.expires_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert [line.split() for line in blocks[pv + 1 : pv + 5]] == [
        ["lead", "liu.yang", "刘洋", "joined"],
        ["member", "wu.gang", "吴刚", "not", "joined", "(no", "open", "invite)"],
        [
            "member",
            "xu.hui",
            "徐慧",
            "not",
            "joined",
            "(invite",
            "open",
            "until",
            *f"{until})".split(),
        ],
        ["member", "zhou.jun", "周军", "not", "joined", "(no", "open", "invite)"],
    ]
    project = blocks.index("project PV01  光伏组件生产基地  (扬中晶曜新能源科技有限公司; squad PV)")
    assert blocks[project + 1].split() == ["contact", "qian.hao", "钱浩", "joined"]
    managers = blocks.index("managers")
    assert blocks[managers + 1].split() == ["manager", "wang.fang", "王芳", "top,", "joined"]
    admins = blocks.index("admins")
    assert blocks[admins + 1].split()[:3] == ["admin", "qiu.ping", "邱萍"]
    walk_ins = blocks.index("walk-in enterprises (no project: the intake squad)")
    assert blocks[walk_ins + 1].split() == ["walk-in", "tg9004", "赵总", "joined"]
    people = len({line.split()[1] for line in blocks if line.startswith("  ")})
    assert blocks[-2] == f"4 of {people} people joined; {people - 4} not yet"


def test_people_not_joined_leaves_out_who_has(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    engine = make_engine(db_url)
    with Session(engine) as session:
        for key in ("liu.yang", "zhou.jun", "xu.hui", "wu.gang"):
            person = session.exec(select(Person).where(Person.key == key)).one()
            person.telegram_user_id = hash(key) % 10**9
            session.add(person)
        session.commit()
    engine.dispose()

    code, out, _ = run(capsys, "people", "--not-joined")

    assert code == 0
    assert "squad PV " not in out and "liu.yang" not in out and "zhou.jun" not in out
    assert "squad HV  高压电气项目服务专班  (no group bound)" in out
    assert all("not joined" in line for line in out.splitlines() if line.startswith("  "))


def test_invite_codes_never_start_with_a_dash() -> None:
    """A leading dash would make `squadbot invite revoke CODE` read the code as an option."""
    from models.invites import invite_code

    codes = [invite_code() for _ in range(5000)]
    assert not any(c.startswith("-") for c in codes)
    assert all(len(c) == 16 for c in codes) and len(set(codes)) == len(codes)
