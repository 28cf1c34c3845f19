"""`squadbot run --webhook URL --listen HOST:PORT` as an operator runs it: wrong flags and a
weak secret stop it in one line, and a real run against the emulator, logging at DEBUG to
stderr and a file, never writes the secret token, configured or drawn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from bot.inbox.receiver import SECRET_HEADER
from bot.sandbox import BotApiEmulator
from tests.harness import ROOT, zone_database

TOKEN = "5005005005:AAwebhook-cli-test-token-0123456789"
CONFIGURED = "configured-Secret_of-the-webhook-0123456789"


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SQUADBOT_") and not name.startswith("SQUADBOT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SQUADBOT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'squadbot.db'}")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--webhook", "https://bot.example.test/hook"], "--webhook URL and --listen HOST:PORT"),
        (["--listen", "127.0.0.1:8443"], "--webhook URL and --listen HOST:PORT go together"),
        (
            ["--webhook", "http://bot.example.test/hook", "--listen", "127.0.0.1:8443"],
            "--webhook: expected an https:// URL",
        ),
        (
            ["--webhook", "https://bot.example.test:8080/hook", "--listen", "127.0.0.1:8443"],
            "--webhook: Telegram posts only to ports 443, 80, 88 or 8443, not 8080",
        ),
        (
            ["--webhook", "https://bot.example.test/hook", "--listen", "8443"],
            "--listen: expected HOST:PORT",
        ),
    ],
)
@pytest.mark.usefixtures("operator")
def test_wrong_flags_stop_run_in_one_line(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *flags]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"squadbot: {err.strip().removeprefix('squadbot: ')}"]
    assert says in err


@pytest.mark.usefixtures("operator")
def test_a_weak_secret_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for weak in ("short-Secret", "has spaces and is long enough to pass", "é" * 20, "x" * 257):
        monkeypatch.setenv("SQUADBOT_WEBHOOK_SECRET", weak)
        code = main(["run", "--webhook", "https://bot.example.test/hook", "--listen", ":8443"])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("squadbot: SQUADBOT_WEBHOOK_SECRET: expected 16 to 256 characters")
        assert weak not in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("secret", [CONFIGURED, None], ids=["configured", "drawn"])
async def test_a_webhook_run_never_logs_the_secret(tmp_path: Path, secret: str | None) -> None:
    zone_database(tmp_path)
    port = free_port()
    log_file = tmp_path / "squadbot.log"
    async with BotApiEmulator(TOKEN) as emu:
        emu.add_user(9001, "企业")
        emu.route_webhooks(f"http://127.0.0.1:{port}")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SQUADBOT_")},
            "SQUADBOT_TELEGRAM_TOKEN": TOKEN,
            "SQUADBOT_TELEGRAM_API_URL": emu.url,
            "SQUADBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'squadbot.db'}",
            "SQUADBOT_BOT_USERNAME": "squadbot_test_bot",
            "SQUADBOT_DATA_DIR": str(tmp_path / "data"),
            "SQUADBOT_LOG_LEVEL": "DEBUG",
            "SQUADBOT_LOG_FILE": str(log_file),
        }
        if secret is not None:
            env["SQUADBOT_WEBHOOK_SECRET"] = secret
        url = "https://bot.example.test/telegram"
        bot = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot.cli", "run", "--webhook", url),
            *("--listen", f"127.0.0.1:{port}"),
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await emu.wait_for(lambda: emu.webhook_url == url, timeout=30)
            registered = next(p for m, p, _ in emu.calls if m == "setWebhook")
            used = str(registered["secret_token"])
            assert used == (secret or used) and len(used) >= 43
            emu.send_text(9001, "/help")
            await emu.wait_for(lambda: len(emu.sent(9001)) == 1, timeout=30)
            async with httpx.AsyncClient(trust_env=False) as client:
                wrong = await client.post(
                    f"http://127.0.0.1:{port}/telegram",
                    json={"update_id": 1},
                    headers={SECRET_HEADER.decode(): used[:-1] + "!"},
                )
            assert wrong.status_code == 403
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(bot.communicate(), timeout=30)
        assert bot.returncode == 0, err.decode()
        assert emu.webhook_url == "" and any(m == "deleteWebhook" for m, _, _ in emu.calls)
    written = out.decode() + err.decode() + log_file.read_text(encoding="utf-8")
    assert "webhook: receiving updates on http://127.0.0.1" in written
    assert "refused a request with a wrong header instead of the right secret" in written
    assert used not in written and used[:-1] not in written and used[:12] not in written
