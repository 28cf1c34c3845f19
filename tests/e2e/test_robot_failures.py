"""A webhook robot that fails an alert every time: it answers HTTP 200 with an error code in
its JSON, hangs past the timeout, answers a body that is not the robot's, or answers bytes
that are not HTTP at all. The alert is posted again with backoff, then marked failed with
the reason, and the squad's lead is told once; the same breach reaches the Telegram chats
on time, whatever the robot does. The robots are a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.plumbing import OutboxMessage
from models.zone.load import load_and_apply
from tests.harness import start_harness, zone_variant

ATTEMPTS = 3
TIMEOUT = 0.3  # the dispatcher's HTTP timeout in these tests
REFUSAL = b'{"errcode":93000,"errmsg":"invalid webhook url"}'


@dataclass
class Robots:
    """One server, a behaviour per path: refuses (200 with an error code), hangs, answers
    an HTML page, answers bytes that are not HTTP."""

    port: int = 0
    posts: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?key=robot-access-token"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            length = next(
                (
                    int(v)
                    for k, _, v in (x.partition(":") for x in lines)
                    if k.lower() == "content-length"
                ),
                0,
            )
            await reader.readexactly(length)
            path = request_line.split()[1].split("?", 1)[0]
            self.posts[path] = self.posts.get(path, 0) + 1
            if path == "/hangs":
                await asyncio.sleep(30)
                return
            if path == "/not-http":
                writer.write(b"\x00\x17garbage that is no HTTP at all\r\n\r\n")
            else:
                body = REFUSAL if path == "/refuses" else "<html>网关登录</html>".encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@pytest.fixture
async def robots() -> AsyncIterator[Robots]:
    robots = Robots()
    server = await asyncio.start_server(robots.handle, "127.0.0.1", 0)
    robots.port = server.sockets[0].getsockname()[1]
    try:
        yield robots
    finally:
        server.close()
        for task in list(robots.tasks):
            task.cancel()
        await asyncio.gather(*robots.tasks, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize(
    ("kind", "path", "reason", "named"),
    [
        ("wecom", "/refuses", "refused the alert: code 93000 (invalid webhook url)", "企业微信"),
        ("dingtalk", "/hangs", "timed out", "钉钉"),
        ("feishu", "/html", "refused the alert: code -1 (unreadable reply)", "飞书"),
        ("json", "/not-http", "unreachable: RemoteProtocolError", "JSON 告警接口"),
    ],
)
async def test_a_robot_that_fails_every_time_is_given_up_reported_once_and_holds_nothing_up(
    tmp_path: Path, robots: Robots, kind: str, path: str, reason: str, named: str
) -> None:
    hook = f'    - {{kind: {kind}, url: "{robots.url(path)}"}}'
    variant = zone_variant(tmp_path, **{"  webhooks: []\n": f"  webhooks:\n{hook}\n"})

    def configure(engine: Engine) -> None:
        load_and_apply(engine, variant)

    h = await start_harness(tmp_path, configure=configure)
    quick = httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)
    h.service.delivery.http = quick
    h.service.delivery.robot_attempts = ATTEMPTS
    try:
        await h.join("yang.fan", "enterprise", project="HV01")
        lead = await h.join("ma.lin", "lead", squad="HV")
        top = await h.join("wang.fang", "manager")
        number = await h.file_ticket("yang.fan", "土地上市", "土地挂牌时间需要确认")
        h.clock.set(h.clock.now() + timedelta(hours=2))
        # Telegram's alerts go out while the robot is still being tried
        await h.said(top, f"超时：工单 {number}", timeout=2.0)
        await h.said(lead, f"超时：工单 {number}", timeout=2.0)
        assert robots.posts.get(path, 0) < ATTEMPTS
        report = await h.said(lead, f"工单 {number} 的消息无法送达", timeout=15.0)
        await h.settle()
        await asyncio.sleep(1.5)  # long enough for another post or report to show up
    finally:
        await h.stop()
        await quick.aclose()

    assert robots.posts[path] == ATTEMPTS
    assert named in report["text"] and reason in report["text"]
    assert "robot-access-token" not in report["text"]
    reports = [t for t in h.texts(lead) if f"工单 {number} 的消息无法送达" in t]
    assert len(reports) == 1
    with Session(h.engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(col(OutboxMessage.ticket_id).is_not(None))
        ).all()
    hooks = [r for r in rows if r.channel == "webhook"]
    assert len(hooks) == 1 and hooks[0].state == "failed" and hooks[0].attempts == ATTEMPTS
    assert reason in (hooks[0].last_error or "")
    assert f"given up after {ATTEMPTS} attempts" in (hooks[0].last_error or "")
    assert {r.state for r in rows if r.channel == "telegram"} == {"sent"}
