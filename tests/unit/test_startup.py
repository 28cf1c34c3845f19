"""Every way `squadbot run` and `squadbot invite` can fail to reach the bot ends in one exact
line naming the cause and the setting to change, a non-zero exit code, and no token in
stdout, stderr or the log file. Only 127.0.0.1 is ever contacted: a closed port, tiny HTTP
servers answering HTML or 502, the Bot API emulator holding another token; the one name
looked up is under `.invalid`, which never resolves."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import logs
from bot.cli import main
from bot.sandbox import EmulatorThread
from bot.startup import Failure, Proxy, masked_url, proxy_for, retrying
from tests.harness import EXAMPLE_ZONE, ROOT

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = TOKEN.partition(":")[2]
BOT_ID = "123456789"
NO_PROXY = (
    "No proxy is set: from mainland China Telegram is reachable only through one, so set "
    "SQUADBOT_PROXY_URL (socks5://HOST:PORT or http://HOST:PORT), or set "
    "SQUADBOT_TELEGRAM_API_URL to a Bot API server you can reach."
)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SQUADBOT_* or proxy variables from outside, no .env, a database and a log file of
    the test's own, and the token set."""
    for name in list(os.environ):
        if name.startswith("SQUADBOT_") or name.upper() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'squadbot.db'}")
    monkeypatch.setenv("SQUADBOT_LOG_FILE", str(tmp_path / "squadbot.log"))
    monkeypatch.setenv("SQUADBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    yield


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Answering(http.server.ThreadingHTTPServer):
    """Answers every request with one fixed status, content type and body."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Answering

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(self.server.status)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[list[Answering]]:
    servers: list[Answering] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def answering(servers: list[Answering], status: int, content_type: str, body: bytes) -> Answering:
    server = Answering(status, content_type, body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server


HTML = b"<!doctype html><html><head><title>Portal</title></head><body>Log in</body></html>"

COMMANDS = {
    "run": ["run"],
    "invite": ["invite", "--role", "enterprise", "--project", "PV01", "--person", "qian.hao"],
}


def run_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> tuple[int, str, str, str]:
    """The command, after a zone is loaded (so that `invite` gets as far as the Bot API)."""
    assert main(["org", "load", str(EXAMPLE_ZONE)]) == 0
    capsys.readouterr()
    code = main(COMMANDS[command])
    out, err = capsys.readouterr()
    log = (tmp_path / "squadbot.log").read_text(encoding="utf-8")
    return code, out, err, log


def assert_fails_with(
    result: tuple[int, str, str, str], code: int, message: str, *, tmp_path: Path
) -> None:
    exit_code, out, err, log = result
    assert exit_code == code
    lines = err.strip().splitlines()
    assert lines[-1] == f"squadbot: {message}"
    assert lines[0].endswith(f"database sqlite:///{tmp_path / 'squadbot.db'}")
    # one line: the cause; nothing of a traceback
    assert "Traceback" not in err and "Traceback" not in log
    assert message in log  # the log file says why it stopped
    assert_no_token(out, err, log)


@pytest.mark.parametrize("command", COMMANDS)
def test_bot_api_unreachable_without_proxy(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    api = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", api)
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        3,
        f"cannot reach the Bot API at {api}: connection refused. {NO_PROXY}",
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_dns_failure(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    api = "http://nonexistent.invalid:8081"
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", api)
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        3,
        f"cannot reach the Bot API at {api}: the host name nonexistent.invalid does not "
        f"resolve (DNS lookup failed). {NO_PROXY}",
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_unreachable_is_named_with_its_password_masked(
    command: str,
    scheme: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    port = closed_port()
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("SQUADBOT_PROXY_URL", f"{scheme}://squad:s3cret-pw@127.0.0.1:{port}")
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        3,
        f"cannot reach the proxy {scheme}://squad:***@127.0.0.1:{port} (SQUADBOT_PROXY_URL): "
        "connection refused. Start the proxy, or correct SQUADBOT_PROXY_URL.",
        tmp_path=tmp_path,
    )
    assert all("s3cret-pw" not in text for text in result[1:])


def test_a_proxy_from_the_environment_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    port = closed_port()
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    result = run_command(capsys, tmp_path, "run")
    assert_fails_with(
        result,
        3,
        f"cannot reach the proxy http://127.0.0.1:{port} (HTTP_PROXY): connection refused. "
        "Start the proxy, or correct HTTP_PROXY, or set SQUADBOT_PROXY_URL (it takes "
        "precedence).",
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_proxy_that_cannot_reach_telegram(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: list[Answering],
) -> None:
    proxy = answering(serve, 502, "text/html", b"<html>upstream unreachable</html>")
    api = "http://nonexistent.invalid"
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", api)
    monkeypatch.setenv("SQUADBOT_PROXY_URL", proxy.url)
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        3,
        f"the Bot API at {api} through the proxy {proxy.url} answered 502 Bad Gateway: the "
        "proxy could not reach it, or the server is failing. Try again later, or check "
        "SQUADBOT_TELEGRAM_API_URL and SQUADBOT_PROXY_URL.",
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_token_rejected(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with EmulatorThread(token="987654321:AAOtherBotOtherTokenOtherToken00") as emu:
        monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", emu.url)
        result = run_command(capsys, tmp_path, command)
        assert_fails_with(
            result,
            2,
            f"the Bot API at {emu.url} rejected the token of bot {BOT_ID} (401 Unauthorized): "
            "set SQUADBOT_TELEGRAM_TOKEN to the bot's current token from @BotFather.",
            tmp_path=tmp_path,
        )


@pytest.mark.parametrize("command", COMMANDS)
def test_an_html_answer(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: list[Answering],
) -> None:
    portal = answering(serve, 200, "text/html; charset=utf-8", HTML)
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", portal.url)
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        2,
        f"{portal.url} is not a Bot API server: it answered 200 OK with an HTML page instead "
        "of the Bot API's JSON. Check SQUADBOT_TELEGRAM_API_URL.",
        tmp_path=tmp_path,
    )
    assert portal.paths == [f"/bot{TOKEN}/getMe"]  # what was asked, and only once


@pytest.mark.parametrize("command", COMMANDS)
def test_a_5xx_answer(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: list[Answering],
) -> None:
    failing = answering(serve, 502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", failing.url)
    result = run_command(capsys, tmp_path, command)
    assert_fails_with(
        result,
        3,
        f"the Bot API at {failing.url} answered 502 Bad Gateway: the server, or something in "
        "between, is failing. Try again later, or check SQUADBOT_TELEGRAM_API_URL.",
        tmp_path=tmp_path,
    )


def test_a_5xx_with_the_bot_apis_json_says_what_it_said(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: list[Answering],
) -> None:
    body = b'{"ok":false,"error_code":500,"description":"Internal Server Error: restart"}'
    failing = answering(serve, 500, "application/json", body)
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", failing.url)
    result = run_command(capsys, tmp_path, "run")
    assert_fails_with(
        result,
        3,
        f"the Bot API at {failing.url} answered 500 Internal Server Error (Internal Server "
        "Error: restart): the server, or something in between, is failing. Try again later, "
        "or check SQUADBOT_TELEGRAM_API_URL.",
        tmp_path=tmp_path,
    )


def test_tls_to_a_plain_http_server(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: list[Answering],
) -> None:
    plain = answering(serve, 200, "application/json", b"{}")
    api = plain.url.replace("http://", "https://")
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", api)
    result = run_command(capsys, tmp_path, "run")
    code, _out, err, _log = result
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"squadbot: the TLS handshake with {api} failed (")
    assert last.endswith(
        "): if the server speaks plain HTTP, SQUADBOT_TELEGRAM_API_URL must start with "
        "http://; if a proxy intercepts TLS, use another proxy."
    )
    assert_no_token(*result[1:])


@pytest.mark.parametrize("url", ["https://api.telegram.org/bot", "http://127.0.0.1:8081/bot/"])
def test_a_bot_api_url_ending_in_bot_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", url)
    for argv in COMMANDS.values():
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            "squadbot: SQUADBOT_TELEGRAM_API_URL: ends in /bot: give the server's base URL "
            "without it, e.g. https://api.telegram.org (squadbot adds /bot<token>/ itself)\n"
        )


def test_a_bot_api_url_holding_the_token_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", f"https://api.telegram.org/bot{TOKEN}/")
    assert main(["run"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        "squadbot: SQUADBOT_TELEGRAM_API_URL: contains a bot token: give only the server's "
        "base URL, e.g. https://api.telegram.org, and the token in SQUADBOT_TELEGRAM_TOKEN\n"
    )
    assert_no_token(out, err)


def test_an_unusable_data_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "data-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SQUADBOT_DATA_DIR", str(blocker))
    assert main(["run"]) == 2
    assert capsys.readouterr().err == (
        f"squadbot: SQUADBOT_DATA_DIR: {blocker} is a file, not a folder\n"
    )
    monkeypatch.setenv("SQUADBOT_DATA_DIR", str(blocker / "attachments"))
    assert main(["sandbox"]) == 2
    assert capsys.readouterr().err == (
        f"squadbot: SQUADBOT_DATA_DIR: cannot create {blocker / 'attachments'}: {blocker} is "
        "a file, not a folder\n"
    )
    assert not (tmp_path / "squadbot.db").exists()


def test_a_database_folder_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{tmp_path}/no/such/squadbot.db")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"squadbot: SQUADBOT_DATABASE_URL: the folder {tmp_path}/no/such does not exist "
        "(SQLite creates the database file, not its folder)"
    )
    assert "Traceback" not in err


def test_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv(
        "SQUADBOT_DATABASE_URL", f"postgresql+psycopg://squad:pw-secret@127.0.0.1:{port}/zone"
    )
    assert main(["run"]) == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    label = f"postgresql+psycopg://squad:***@127.0.0.1:{port}/zone"
    assert lines[0].endswith(f"database {label}")
    assert lines[-1].startswith(f"squadbot: cannot use the database {label}: ")
    assert lines[-1].endswith("; try again later")
    assert "pw-secret" not in err and "Traceback" not in err


# --- the connection, when it works ----------------------------------------------------------


def test_invite_asks_the_bot_api_for_the_bots_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SQUADBOT_LOG_LEVEL", "DEBUG")  # httpx's request lines, masked
    with EmulatorThread(token=TOKEN, username="yz_squad_bot") as emu:
        monkeypatch.setenv("SQUADBOT_TELEGRAM_API_URL", emu.url)
        code, out, err, log = run_command(capsys, tmp_path, "invite")
    assert code == 0
    code_line = out.strip().splitlines()[-1]
    assert out.startswith(f"https://t.me/yz_squad_bot?start={code_line}  (valid until ")
    assert f"/bot{BOT_ID}:***/getMe" in log
    assert_no_token(out, err, log)


def test_run_says_which_bot_it_is_and_where_its_database_is(tmp_path: Path) -> None:
    """A real process: it connects, says as whom, runs, and stops on SIGTERM with exit 0;
    with SQUADBOT_LOG_LEVEL=DEBUG httpx logs request URLs, and they are masked."""
    db = tmp_path / "squadbot.db"
    with EmulatorThread(token=TOKEN, username="yz_squad_bot") as emu:
        url = emu.url
        proc = start_bot(tmp_path, url, db, level="DEBUG")
        try:
            wait_for_line(tmp_path / "squadbot.log", "connected to the Bot API", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log = (tmp_path / "squadbot.log").read_text(encoding="utf-8")
    ours = [line for line in log.splitlines() if " squadbot: " in line]
    assert ours[0].endswith(f"INFO squadbot: database sqlite:///{db}")
    assert f"connected to the Bot API at {url} as @yz_squad_bot (id {BOT_ID})" in log
    assert f"/bot{BOT_ID}:***/getMe" in log  # httpx's request line, masked
    assert "time zone Asia/Shanghai (the zone file's `timezone`)" in log
    assert_no_token(err, log)
    # no migration chatter, and the scheduler neither announces nor repeats itself
    assert "alembic" not in log and "Running upgrade" not in log
    assert "Scheduler started" not in log and "Added job" not in log
    assert "Application started" not in log and "JobQueue" not in log
    assert log.count("running: inbox-fetch") == 1 and log.count("INFO squadbot: stopped") == 1
    assert "; sending at most 30 messages/s; leases of 30s" in log


def test_run_retry_start_waits_for_the_bot_api(tmp_path: Path) -> None:
    """As a service: the Bot API is not there yet; the bot says it is retrying, with backoff,
    and connects once the server comes up on that port."""
    port = closed_port()
    db = tmp_path / "squadbot.db"
    proc = start_bot(tmp_path, f"http://127.0.0.1:{port}", db, retry=True)
    try:
        wait_for_line(tmp_path / "squadbot.log", "(attempt 3)", proc)
        with EmulatorThread(token=TOKEN, port=port):
            wait_for_line(tmp_path / "squadbot.log", "connected to the Bot API", proc)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    log = (tmp_path / "squadbot.log").read_text(encoding="utf-8")
    retried = [line for line in log.splitlines() if "Retrying in" in line]
    assert retried[0].endswith(
        f"WARNING squadbot: cannot reach the Bot API at http://127.0.0.1:{port}: connection "
        f"refused. {NO_PROXY} Retrying in 0.5s (attempt 2)."
    )
    assert retried[1].endswith("Retrying in 1.0s (attempt 3).")
    assert_no_token(log, err)


def test_run_retry_start_stops_on_sigterm_while_waiting(tmp_path: Path) -> None:
    proc = start_bot(
        tmp_path, f"http://127.0.0.1:{closed_port()}", tmp_path / "squadbot.db", retry=True
    )
    try:
        wait_for_line(tmp_path / "squadbot.log", "Retrying in", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped before the Bot API could be reached" in err


def start_bot(
    tmp_path: Path, api: str, db: Path, *, retry: bool = False, level: str = "INFO"
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARIABLES}
    env.update(
        {
            "SQUADBOT_TELEGRAM_TOKEN": TOKEN,
            "SQUADBOT_TELEGRAM_API_URL": api,
            "SQUADBOT_DATABASE_URL": f"sqlite:///{db}",
            "SQUADBOT_LONG_POLL_SECONDS": "1",
            "SQUADBOT_DATA_DIR": str(tmp_path / "data"),
            "SQUADBOT_LOG_FILE": str(tmp_path / "squadbot.log"),
            "SQUADBOT_LOG_LEVEL": level,
            "SQUADBOT_ZONE_FILE": str(EXAMPLE_ZONE),
        }
    )
    argv = [sys.executable, "-m", "bot.cli", "run", *(["--retry-start"] if retry else [])]
    return subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_no_token(*texts: str) -> None:
    """Neither the token nor its secret half appears in any of these outputs."""
    for text in texts:
        assert TOKEN not in text and SECRET not in text


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(encoding="utf-8"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the bot ended ({proc.returncode}) before {needle!r}")
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in the log within 30s")


# --- the pieces -----------------------------------------------------------------------------


def test_the_token_filter_masks_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    logs.add_secret(TOKEN)
    log_file = tmp_path / "filter.log"
    with logs.configured("DEBUG", log_file):
        logger = logging.getLogger("httpx")
        logger.info('HTTP Request: POST http://127.0.0.1/bot%s/getMe "200 OK"', TOKEN)
        logging.getLogger("any").warning(f"the secret half alone: {SECRET}")
        try:
            raise RuntimeError(f"The token `{TOKEN}` was rejected by the server.")
        except RuntimeError:
            logging.getLogger("telegram").exception("failed")
        logging.getLogger("other").error("a token not configured: 555555:%s", "B" * 35)
    written = log_file.read_text(encoding="utf-8")
    captured = caplog.text
    assert_no_token(written, captured)
    for text in (written, captured):
        assert "B" * 35 not in text
        assert f"/bot{BOT_ID}:***/getMe" in text
        assert f"The token `{BOT_ID}:***` was rejected" in text
        assert "555555:***" in text


def test_failure_messages_never_hold_the_token() -> None:
    logs.add_secret(TOKEN)
    assert Failure(f"a message with {TOKEN} in it").message == f"a message with {BOT_ID}:*** in it"


def test_masked_url() -> None:
    assert masked_url("socks5://u:p@127.0.0.1:1080") == "socks5://u:***@127.0.0.1:1080"
    assert masked_url("http://127.0.0.1:7890") == "http://127.0.0.1:7890"


def test_the_proxy_comes_from_the_setting_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = "https://api.telegram.org"
    assert proxy_for(api, None) == Proxy(None)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:7890")
    assert proxy_for(api, None) == Proxy("http://127.0.0.1:7890", "HTTPS_PROXY")
    assert proxy_for(api, "socks5://127.0.0.1:1080") == Proxy("socks5://127.0.0.1:1080")
    monkeypatch.setenv("NO_PROXY", "api.telegram.org")
    assert proxy_for(api, None) == Proxy(None)


async def test_retrying_backs_off_and_gives_up_on_a_permanent_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Failure("not yet.", code=3)
        return "up"

    caplog.set_level(logging.WARNING, "squadbot")
    assert await retrying(flaky, retry=True, first_delay=0.01) == "up"
    assert [r.getMessage() for r in caplog.records] == [
        "not yet. Retrying in 0.0s (attempt 2).",
        "not yet. Retrying in 0.0s (attempt 3).",
    ]

    async def rejected() -> str:
        raise Failure("rejected.", code=2)

    with pytest.raises(Failure):
        await retrying(rejected, retry=True, first_delay=0.01)
    calls.clear()
    with pytest.raises(Failure):
        await retrying(flaky, retry=False)
    assert len(calls) == 1


def test_an_unexpected_error_is_one_line_without_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import bot.commands.db

    def broken(_settings: object, _args: object) -> int:
        raise RuntimeError(f"something odd near /bot{TOKEN}/getMe")

    monkeypatch.setattr(bot.commands.db, "cmd_db_upgrade", broken)
    assert main(["db", "upgrade"]) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"squadbot: unexpected error: RuntimeError: something odd near /bot{BOT_ID}:***/getMe "
        "(SQUADBOT_LOG_LEVEL=DEBUG shows the traceback)\n"
    )
    log = (tmp_path / "squadbot.log").read_text(encoding="utf-8")
    assert "Traceback" in log and "RuntimeError" in log  # kept for a bug report, masked
    assert_no_token(out, err, log)


def test_ptbs_invalid_token_text_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """PTB's own InvalidToken message holds the whole token; it is replaced, not masked."""
    from telegram.error import InvalidToken

    import bot.commands.db

    def rejected(_settings: object, _args: object) -> int:
        raise InvalidToken(f"The token `{TOKEN}` was rejected by the server.")

    monkeypatch.setattr(bot.commands.db, "cmd_db_upgrade", rejected)
    assert main(["db", "upgrade"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        f"squadbot: the Bot API at https://api.telegram.org rejected the token of bot {BOT_ID}: "
        "set SQUADBOT_TELEGRAM_TOKEN to the bot's current token from @BotFather\n"
    )
    log = (tmp_path / "squadbot.log").read_text(encoding="utf-8")
    assert_no_token(out, err, log)
