"""Alert webhooks: request shapes, signatures, and delivery against a real local server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.application import ZoneCache
from bot.outbox import Delivery
from bot.outbox.robots import (
    Alert,
    WebhookError,
    WebhookKind,
    WebhookTarget,
    build_request,
    deliver,
)
from bot.sending_bot import SendingBot
from models.clock import FakeClock
from models.outbox import enqueue
from models.plumbing import OutboxMessage
from tests.harness import zone_database

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 10, 9, 16, 53, 20, 123000, tzinfo=SH)  # 1760000000.123 Unix time
ALERT = Alert(
    title="超时",
    text="工单 T-1 已超时",
    ticket_number="T-1",
    level="breach",
    extra={"squad": "A"},
)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


# --- request shapes and signatures -------------------------------------------------------------


def test_json_body_headers_and_signature() -> None:
    url, headers, body = build_request(WebhookTarget("json", "http://h/hook", "s3cret"), ALERT, NOW)
    assert url == "http://h/hook"
    assert json.loads(body) == {
        "title": "超时",
        "text": "工单 T-1 已超时",
        "ticket": "T-1",
        "level": "breach",
        "extra": {"squad": "A"},
        "sent_at": "2025-10-09T16:53:20.123000+08:00",
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Squadbot-Timestamp"] == "1760000000"
    expected = hmac_sha256(b"s3cret", b"1760000000." + body).hex()
    assert headers["X-Squadbot-Signature"] == f"sha256={expected}"
    # Known value, computed with `openssl dgst -sha256 -hmac s3cret` over "1760000000.<body>".
    assert headers["X-Squadbot-Signature"] == (
        "sha256=27654d49e3ba64b4ff8812d433cecb5eb0035b14231b97f58394975123f7aae4"
    )


def test_json_without_secret_is_unsigned() -> None:
    _, headers, _ = build_request(WebhookTarget("json", "http://h/hook"), ALERT, NOW)
    assert "X-Squadbot-Signature" not in headers
    assert headers["X-Squadbot-Timestamp"] == "1760000000"


def test_wecom_markdown() -> None:
    url, headers, body = build_request(WebhookTarget("wecom", "https://h/send?key=k"), ALERT, NOW)
    assert url == "https://h/send?key=k"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "msgtype": "markdown",
        "markdown": {"content": "**超时**\n工单 T-1 已超时"},
    }


def test_wecom_content_is_cut_to_robot_limit() -> None:
    long_alert = Alert("标题", "很长" * 3000, None, "warning", {})
    _, _, body = build_request(WebhookTarget("wecom", "https://h/send"), long_alert, NOW)
    content = json.loads(body)["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert content.startswith("**标题**\n很长") and content.endswith("…")


def test_dingtalk_markdown_without_secret_keeps_url() -> None:
    target = WebhookTarget("dingtalk", "https://h/robot/send?access_token=abc")
    url, _, body = build_request(target, ALERT, NOW)
    assert url == "https://h/robot/send?access_token=abc"
    assert json.loads(body) == {
        "msgtype": "markdown",
        "markdown": {"title": "超时", "text": "### 超时\n\n工单 T-1 已超时"},
    }


def test_dingtalk_signature() -> None:
    target = WebhookTarget("dingtalk", "https://h/robot/send?access_token=abc", "SEC000example")
    url, _, _ = build_request(target, ALERT, NOW)
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["abc"]
    assert query["timestamp"] == ["1760000000123"]
    string_to_sign = b"1760000000123\nSEC000example"
    expected = base64.b64encode(hmac_sha256(b"SEC000example", string_to_sign)).decode()
    assert query["sign"] == [expected]
    # Known value from `openssl dgst -sha256 -hmac SEC000example -binary | base64`, url-quoted.
    assert url.endswith("&sign=ZrVI%2FNUMz36A357TkkF5Ph%2FAp3XLzlbpf5eWbI9VRf8%3D")
    assert unquote(url.rsplit("sign=", 1)[1]) == "ZrVI/NUMz36A357TkkF5Ph/Ap3XLzlbpf5eWbI9VRf8="


def test_dingtalk_signature_on_url_without_query() -> None:
    target = WebhookTarget("dingtalk", "https://h/robot/send", "SEC000example")
    url, _, _ = build_request(target, ALERT, NOW)
    assert url.startswith("https://h/robot/send?timestamp=1760000000123&sign=")


def test_feishu_text_and_signature() -> None:
    target = WebhookTarget("feishu", "https://h/hook/x", "feishu-secret")
    url, _, body = build_request(target, ALERT, NOW)
    payload = json.loads(body)
    assert url == "https://h/hook/x"
    assert payload["msg_type"] == "text"
    assert payload["content"] == {"text": "超时\n工单 T-1 已超时"}
    assert payload["timestamp"] == "1760000000"
    expected = base64.b64encode(hmac_sha256(b"1760000000\nfeishu-secret", b"")).decode()
    assert payload["sign"] == expected
    # Known value from openssl: HMAC-SHA256 keyed by "1760000000\nfeishu-secret" over nothing.
    assert payload["sign"] == "ZoddQCeyjYQD2OMy0Ec23f+zL4X01RJhlFB122asI2o="


def test_feishu_without_secret_is_unsigned() -> None:
    _, _, body = build_request(WebhookTarget("feishu", "https://h/hook/x"), ALERT, NOW)
    assert set(json.loads(body)) == {"msg_type", "content"}


def test_timestamp_is_independent_of_timezone() -> None:
    target = WebhookTarget("json", "http://h/hook")
    _, in_utc, _ = build_request(target, ALERT, NOW.astimezone(UTC))
    _, in_shanghai, _ = build_request(target, ALERT, NOW)
    assert in_utc["X-Squadbot-Timestamp"] == in_shanghai["X-Squadbot-Timestamp"]


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_request(WebhookTarget("json", "http://h/hook"), ALERT, datetime(2025, 10, 9))


def test_secret_is_not_in_repr() -> None:
    assert "s3cret" not in repr(WebhookTarget("json", "http://h/hook", "s3cret"))


# --- a tiny HTTP server on 127.0.0.1 -----------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Robot:
    """Answers every POST with the scripted status, body and delay, and records it."""

    port: int = 0
    status: int = 200
    body: bytes = b'{"errcode":0,"errmsg":"ok"}'
    delay: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, status: int, body: object, **headers: str) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.extra_headers = headers

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line.split()[1], headers, body))
            if self.delay:
                await asyncio.sleep(self.delay)
            extra = "".join(
                f"{k.replace('_', '-')}: {v}\r\n" for k, v in self.extra_headers.items()
            )
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + self.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@pytest.fixture
async def robot() -> AsyncIterator[Robot]:
    robot = Robot()
    server = await asyncio.start_server(robot.handle, "127.0.0.1", 0)
    robot.port = server.sockets[0].getsockname()[1]
    try:
        yield robot
    finally:
        server.close()
        for task in list(robot.tasks):
            task.cancel()
        await asyncio.gather(*robot.tasks, return_exceptions=True)
        await server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: never route test traffic through a proxy from the environment.
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        yield client


async def fails(client: httpx.AsyncClient, target: WebhookTarget) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        await deliver(client, target, ALERT, NOW)
    return caught.value


# --- deliver -------------------------------------------------------------------------------------


async def test_json_delivery_sends_what_build_request_built(
    robot: Robot, client: httpx.AsyncClient
) -> None:
    robot.answer(200, b"accepted")
    target = WebhookTarget("json", robot.url("/alerts"), "s3cret")
    await deliver(client, target, ALERT, NOW)
    _, headers, body = build_request(target, ALERT, NOW)
    [got] = robot.received
    assert got.path == "/alerts"
    assert got.body == body
    assert got.headers["x-squadbot-signature"] == headers["X-Squadbot-Signature"]
    assert got.headers["content-type"] == "application/json"


async def test_signed_dingtalk_delivery_carries_signature_in_query(
    robot: Robot, client: httpx.AsyncClient
) -> None:
    target = WebhookTarget("dingtalk", robot.url("/robot/send?access_token=abc"), "SEC000example")
    await deliver(client, target, ALERT, NOW)
    [got] = robot.received
    assert got.path.endswith("&sign=ZrVI%2FNUMz36A357TkkF5Ph%2FAp3XLzlbpf5eWbI9VRf8%3D")


@pytest.mark.parametrize(
    ("kind", "reply"),
    [
        ("wecom", {"errcode": 0, "errmsg": "ok"}),
        ("dingtalk", {"errcode": 0, "errmsg": "ok"}),
        ("feishu", {"code": 0, "data": {}, "msg": "success"}),
        ("feishu", {"StatusCode": 0, "StatusMessage": "success"}),
        ("feishu", {"StatusCode": 0, "StatusMessage": "success", "code": 0, "msg": "success"}),
    ],
)
async def test_robot_success(
    robot: Robot, client: httpx.AsyncClient, kind: WebhookKind, reply: dict[str, object]
) -> None:
    robot.answer(200, reply)
    await deliver(client, WebhookTarget(kind, robot.url()), ALERT, NOW)
    assert len(robot.received) == 1


async def test_server_error_is_retryable(robot: Robot, client: httpx.AsyncClient) -> None:
    robot.answer(500, b"oops")
    error = await fails(client, WebhookTarget("json", robot.url()))
    assert error.retryable and error.status == 500


async def test_too_many_requests_is_retryable_with_retry_after(
    robot: Robot, client: httpx.AsyncClient
) -> None:
    robot.answer(429, b"slow down", Retry_After="7")
    error = await fails(client, WebhookTarget("json", robot.url()))
    assert error.retryable and error.status == 429 and error.retry_after == 7.0


async def test_client_error_is_final(robot: Robot, client: httpx.AsyncClient) -> None:
    robot.answer(400, b"bad request")
    error = await fails(client, WebhookTarget("json", robot.url()))
    assert not error.retryable and error.status == 400


@pytest.mark.parametrize(
    ("kind", "status", "reply", "retryable", "code"),
    [
        ("wecom", 200, {"errcode": 93000, "errmsg": "invalid webhook url"}, False, 93000),
        ("wecom", 200, {"errcode": 45009, "errmsg": "api freq out of limit"}, True, 45009),
        ("dingtalk", 200, {"errcode": 310000, "errmsg": "sign not match"}, False, 310000),
        ("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"}, True, 130101),
        ("feishu", 200, {"code": 19021, "msg": "sign match fail"}, False, 19021),
        ("feishu", 400, {"code": 11232, "msg": "frequency limited"}, True, 11232),
        ("feishu", 200, {"StatusCode": 9499, "StatusMessage": "Bad Request"}, False, 9499),
        ("wecom", 200, b"<html>login</html>", False, -1),
        ("dingtalk", 200, {"unexpected": True}, False, -1),
    ],
)
async def test_robot_refusals(
    robot: Robot,
    client: httpx.AsyncClient,
    kind: WebhookKind,
    status: int,
    reply: object,
    retryable: bool,
    code: int,
) -> None:
    robot.answer(status, reply)
    error = await fails(client, WebhookTarget(kind, robot.url()))
    assert error.retryable is retryable
    assert error.code == code


async def test_errors_do_not_leak_access_tokens(robot: Robot, client: httpx.AsyncClient) -> None:
    robot.answer(200, {"errcode": 310000, "errmsg": "sign not match"})
    target = WebhookTarget("dingtalk", robot.url("/robot/send?access_token=TOKEN123"), "SECabc")
    error = await fails(client, target)
    assert "TOKEN123" not in str(error) and "SECabc" not in str(error)
    assert "/robot/send" in str(error)


async def test_timeout_is_retryable(robot: Robot) -> None:
    robot.delay = 2.0
    async with httpx.AsyncClient(trust_env=False, timeout=0.05) as quick:
        error = await fails(quick, WebhookTarget("json", robot.url()))
    assert error.retryable and "timed out" in str(error)


async def test_connection_refused_is_retryable(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await fails(client, WebhookTarget("json", f"http://127.0.0.1:{port}/hook"))
    assert error.retryable


async def test_unsupported_scheme_is_final(client: httpx.AsyncClient) -> None:
    error = await fails(client, WebhookTarget("json", "ftp://127.0.0.1/hook"))
    assert not error.retryable


# --- the outbox honours a robot's own hint ---------------------------------------------------


def breach_rows(engine: Engine, clock: FakeClock, url: str, count: int) -> list[int]:
    params = {
        "number": "YZ-1",
        "category": {"category": "water"},
        "deadline": {"key": "deadline.handling"},
        "due": {"time": clock.now().isoformat()},
        "owner": "周军",
        "squad": "PV",
        "description": "停水",
    }
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            enqueue(
                session,
                clock.now(),
                channel="webhook",
                webhook={"kind": "wecom" if "wecom" in url else "json", "url": url},
                template="alert.breach",
                locale="zh-CN",
                params=params,
            )
            for _ in range(count)
        ]
        session.commit()
    return [row.id for row in rows if row.id is not None]


@pytest.mark.parametrize(
    ("path", "status", "reply", "headers", "wait"),
    [
        ("/wecom", 200, {"errcode": 45009, "errmsg": "api freq out of limit"}, {}, 60.0),
        ("/json", 429, b"slow down", {"Retry_After": "7"}, 7.0),
    ],
)
async def test_the_outbox_waits_as_long_as_the_robot_says(
    robot: Robot,
    client: httpx.AsyncClient,
    tmp_path: Path,
    path: str,
    status: int,
    reply: object,
    headers: dict[str, str],
    wait: float,
) -> None:
    engine = zone_database(tmp_path)
    clock = FakeClock()
    ids = breach_rows(engine, clock, robot.url(path), 2)
    robot.answer(status, reply, **headers)
    delivery = Delivery(engine, cast(SendingBot, None), ZoneCache(ttl=0), clock=clock, http=client)
    await delivery.pass_once()
    await asyncio.gather(*list(delivery._hook_tasks))
    assert len(robot.received) == 1  # the robot said to wait: its next alert waits too
    with Session(engine) as session:
        rows = [session.get(OutboxMessage, i) for i in ids]
    until = clock.now() + timedelta(seconds=wait)
    for row in rows:
        assert row is not None and row.state == "pending"
        # the second waits for what remains of the robot's hold
        assert until - timedelta(seconds=1) < row.next_attempt_at <= until
    assert rows[0] is not None and rows[0].next_attempt_at == until
    assert rows[0].attempts == 0  # a hold, not a failed attempt
    await delivery.pass_once()  # nothing is due in the injected clock
    assert len(robot.received) == 1
    engine.dispose()
