"""Managers' alerts over plain HTTPS webhooks: generic JSON, WeCom, DingTalk and Feishu robots.

Telegram is not reachable from mainland China without a proxy, but zone leadership lives in
WeCom/DingTalk/Feishu groups, so breach and supervision alerts must also reach those robots.
Requests are built by a pure function so signatures can be checked byte for byte; delivery
only classifies failures, leaving retries and backoff to the outbox that calls it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

__all__ = ["Alert", "WebhookError", "WebhookKind", "WebhookTarget", "build_request", "deliver"]

WebhookKind = Literal["json", "wecom", "dingtalk", "feishu"]

# WeCom rejects markdown content over 4096 bytes outright; a cut alert beats a lost one.
_WECOM_MAX_BYTES = 4096
# The robots answer HTTP 200 with these codes when we post too often: try again later.
_RATE_LIMIT_CODES: dict[str, frozenset[int]] = {
    "wecom": frozenset({45009}),
    "dingtalk": frozenset({130101}),
    "feishu": frozenset({11232}),
}
# How long each robot holds a sender back once it says so, when it sends no Retry-After:
# WeCom allows 20 messages a minute, DingTalk 20 a minute and then refuses for 10 minutes,
# Feishu 100 a minute (5 a second).
_RATE_LIMIT_WAIT: dict[str, float] = {"wecom": 60.0, "dingtalk": 600.0, "feishu": 10.0}


@dataclass(frozen=True)
class WebhookTarget:
    kind: WebhookKind
    url: str
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Alert:
    """An alert whose text is already rendered in the recipients' language."""

    title: str
    text: str
    ticket_number: str | None
    level: str
    extra: dict[str, str] = field(default_factory=dict)


class WebhookError(Exception):
    """A failed delivery; `retryable` tells the outbox whether trying again can help, and
    `retry_after` (the Retry-After header, or the wait a robot's rate-limit code implies)
    how long it should wait first."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
        self.retry_after = retry_after


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _unix_millis(now: datetime) -> int:
    # Integer arithmetic: float timestamps can land a millisecond off and break a signature.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return (now - _EPOCH) // timedelta(milliseconds=1)


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - len("…".encode())].decode("utf-8", errors="ignore") + "…"


def build_request(
    target: WebhookTarget, alert: Alert, now: datetime
) -> tuple[str, dict[str, str], bytes]:
    """The exact (url, headers, body) to POST; pure, so the signing can be tested offline.

    `now` is the injected clock: robots reject signatures older than about an hour, so the
    timestamp must be the send time, not the time the alert was queued.
    """
    headers = {"Content-Type": "application/json"}
    millis = _unix_millis(now)
    seconds = millis // 1000
    secret = target.secret
    if target.kind == "json":
        body = _dumps(
            {
                "title": alert.title,
                "text": alert.text,
                "ticket": alert.ticket_number,
                "level": alert.level,
                "extra": dict(alert.extra),
                "sent_at": now.isoformat(),
            }
        )
        headers["X-Squadbot-Timestamp"] = str(seconds)
        if secret:
            signed = f"{seconds}.".encode() + body
            digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
            headers["X-Squadbot-Signature"] = f"sha256={digest}"
        return target.url, headers, body
    if target.kind == "wecom":
        content = _truncate_utf8(f"**{alert.title}**\n{alert.text}", _WECOM_MAX_BYTES)
        return (
            target.url,
            headers,
            _dumps({"msgtype": "markdown", "markdown": {"content": content}}),
        )
    if target.kind == "dingtalk":
        body = _dumps(
            {
                "msgtype": "markdown",
                "markdown": {"title": alert.title, "text": f"### {alert.title}\n\n{alert.text}"},
            }
        )
        url = target.url
        if secret:
            sign = _b64_hmac(secret.encode("utf-8"), f"{millis}\n{secret}".encode())
            url = _with_query(url, f"timestamp={millis}&sign={quote(sign, safe='')}")
        return url, headers, body
    if target.kind == "feishu":
        payload: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": f"{alert.title}\n{alert.text}"},
        }
        if secret:
            payload["timestamp"] = str(seconds)
            payload["sign"] = _b64_hmac(f"{seconds}\n{secret}".encode(), b"")
        return target.url, headers, _dumps(payload)
    raise ValueError(f"unknown webhook kind {target.kind!r}")


def _where(url: str) -> str:
    # Robot URLs carry their access token in the query string: never log or raise with it.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reply_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _robot_code(kind: str, reply: Any) -> int | None:
    """The robot's error code, None when it reports success, -1 when the reply is unreadable.

    An unreadable reply counts as a failure: a robot always answers JSON, so anything else
    means the URL points somewhere that is not the robot (a proxy page, a typo'd host).
    """
    if not isinstance(reply, dict):
        return -1
    keys = ("errcode",) if kind in ("wecom", "dingtalk") else ("code", "StatusCode")
    present = [reply[key] for key in keys if key in reply]
    if not present:
        return -1
    for code in present:
        if code != 0:
            return code if isinstance(code, int) else -1
    return None


async def deliver(
    client: httpx.AsyncClient, target: WebhookTarget, alert: Alert, now: datetime
) -> None:
    """POST one alert and raise `WebhookError` unless the receiver accepted it.

    Robots answer HTTP 200 even when they drop a message (bad signature, missing keyword,
    rate limit), so their JSON reply is checked too; otherwise alerts would vanish silently.
    """
    url, headers, body = build_request(target, alert, now)
    where = _where(url)
    try:
        response = await client.post(url, content=body, headers=headers)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise WebhookError(f"bad webhook URL {where}: {exc}", retryable=False) from exc
    except httpx.TimeoutException as exc:
        raise WebhookError(f"webhook {where} timed out", retryable=True) from exc
    except httpx.TransportError as exc:
        raise WebhookError(
            f"webhook {where} unreachable: {type(exc).__name__}", retryable=True
        ) from exc
    except httpx.HTTPError as exc:
        raise WebhookError(
            f"webhook {where} failed: {type(exc).__name__}", retryable=False
        ) from exc

    status = response.status_code
    retry_after = _retry_after(response)
    reply = None if target.kind == "json" else _reply_json(response)
    code = None if target.kind == "json" else _robot_code(target.kind, reply)
    if code is not None and code in _RATE_LIMIT_CODES[target.kind]:
        # A rate-limit code means "later", whatever HTTP status the robot wrapped it in.
        raise WebhookError(
            f"{target.kind} robot at {where} is rate limiting (code {code})",
            retryable=True,
            status=status,
            code=code,
            retry_after=retry_after if retry_after is not None else _RATE_LIMIT_WAIT[target.kind],
        )
    if status == 429 or status >= 500:
        raise WebhookError(
            f"webhook {where} answered HTTP {status}",
            retryable=True,
            status=status,
            retry_after=retry_after,
        )
    if not 200 <= status < 300:
        raise WebhookError(
            f"webhook {where} answered HTTP {status}", retryable=False, status=status
        )
    if code is not None:
        message = (reply.get("errmsg") or reply.get("msg")) if isinstance(reply, dict) else None
        raise WebhookError(
            f"{target.kind} robot at {where} refused the alert: code {code} "
            f"({message or 'unreadable reply'})",
            retryable=False,
            status=status,
            code=code,
        )
