"""The wire layer of the sandbox Bot API emulator: a small HTTP/1.1 server, the Telegram
response envelope and typed access to a request's parameters.

Kept apart so that the rest of the emulator reads as Bot API semantics only. It is
deliberately minimal (no TLS, no pipelining guarantees beyond sequential keep-alive)
because its only clients are python-telegram-bot's httpx transport and test code, all on
127.0.0.1; the standard library has no asyncio HTTP server, and adding a web framework as
a dependency for a test double would be out of proportion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message as _HeaderBlock
from email.utils import collapse_rfc2231_value
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

HOST = "127.0.0.1"
_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart/form-data body."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    version: str = "HTTP/1.1"

    def params(self) -> tuple[dict[str, Any], dict[str, Upload]]:
        """Merge query-string and body parameters the way the Bot API accepts them: GET with
        a query string, or POST as form-urlencoded, JSON or multipart/form-data."""
        values: dict[str, Any] = dict(parse_qsl(self.query, keep_blank_values=True))
        uploads: dict[str, Upload] = {}
        ctype, options = _split_header(self.headers.get("content-type", ""))
        if not self.body:
            return values, uploads
        if ctype == "application/json":
            decoded = json.loads(self.body.decode("utf-8"))
            if not isinstance(decoded, dict):
                raise ValueError("JSON body must be an object")
            if _SURROGATE_ESCAPE.search(self.body):
                _require_utf8(decoded)
            values.update(decoded)
        elif ctype == "multipart/form-data":
            boundary = options.get("boundary")
            if not boundary:
                raise ValueError("multipart body without boundary")
            fields, uploads = parse_multipart(self.body, boundary)
            values.update(fields)
        else:
            # Telegram treats an untyped body as form data, and so does this.
            values.update(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        return values, uploads


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A Bot API failure; raised anywhere in the emulator and turned into Telegram's JSON."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _require_utf8(decoded: dict[str, Any]) -> None:
    """A JSON escape of a surrogate is valid only as half of a pair: a lone one is no
    character at all, and Telegram refuses the call."""
    try:
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("strings must be encoded in UTF-8") from None


class ApiParams:
    """Typed access to Bot API parameters. Over form encoding every value is a string and
    nested objects (reply_markup, reply_parameters, ...) are JSON strings; over a JSON body
    they arrive already decoded. Handlers should not have to care which."""

    def __init__(self, values: dict[str, Any], uploads: dict[str, Upload]) -> None:
        self._values = values
        self._uploads = uploads

    def __contains__(self, name: str) -> bool:
        return name in self._values or name in self._uploads

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None else str(value)

    def integer(self, name: str) -> int | None:
        value = self._values.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def number(self, name: str) -> float | None:
        value = self._values.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        return str(self._values.get(name, "")).lower() in ("true", "1")

    def json(self, name: str) -> Any:
        value = self._values.get(name)
        if not isinstance(value, str):
            return value
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None

    def chat_ref(self, name: str = "chat_id") -> int | str | None:
        """A chat is addressed by numeric id or by "@username"."""
        value = self._values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int):
            return value
        text = str(value)
        return int(text) if text.lstrip("-").isdigit() else text

    def file(self, name: str) -> Upload | str | None:
        """An uploaded part, an attach://<part> reference, or a file_id/URL string."""
        if name in self._uploads:
            return self._uploads[name]
        value = self.text(name)
        if value is not None and value.startswith("attach://"):
            upload = self._uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f'can\'t find attached file "{value}"')
            return upload
        return value

    def for_record(self) -> dict[str, Any]:
        """Parameters as logged in `calls`, with uploads summarised instead of inlined."""
        record = dict(self._values)
        for name, upload in self._uploads.items():
            record[name] = f"<upload {upload.filename}, {len(upload.data)} bytes>"
        return record


# One Bot API method: its parameters in, its JSON result out (or an ApiError raised).
ApiMethod = Callable[[ApiParams], Awaitable[Any]]


def api_ok(result: Any) -> HttpResponse:
    return _json_response(200, {"ok": True, "result": result})


def api_error(error: ApiError) -> HttpResponse:
    payload: dict[str, Any] = {
        "ok": False,
        "error_code": error.status,
        "description": error.description,
    }
    if error.retry_after is not None:
        payload["parameters"] = {"retry_after": error.retry_after}
    return _json_response(error.status, payload)


def _json_response(status: int, payload: dict[str, Any]) -> HttpResponse:
    try:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: sent as a JSON escape, as Telegram does
        body = json.dumps(payload).encode("ascii")
    return HttpResponse(status, body)


def _split_header(value: str) -> tuple[str, dict[str, str]]:
    """Parse `type/sub; key="value"` with the stdlib's RFC 2231-aware header parser."""
    block = _HeaderBlock()
    block["x"] = value
    params = block.get_params(header="x") or []
    if not params:
        return "", {}
    main = params[0][0].lower()
    return main, {key.lower(): collapse_rfc2231_value(val) for key, val in params[1:]}


def parse_multipart(body: bytes, boundary: str) -> tuple[dict[str, str], dict[str, Upload]]:
    """Split a multipart/form-data body by hand: `cgi` is gone from newer Pythons and the
    `email` parser may rewrite line endings inside binary parts."""
    fields: dict[str, str] = {}
    uploads: dict[str, Upload] = {}
    delimiter = b"--" + boundary.encode("latin-1")
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        raw_headers, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = _parse_header_lines(raw_headers.decode("utf-8", "replace").split("\r\n"))
        _, disposition = _split_header(headers.get("content-disposition", ""))
        name = disposition.get("name")
        if name is None:
            continue
        if "filename" in disposition:
            uploads[name] = Upload(
                field=name,
                filename=disposition["filename"],
                content_type=headers.get("content-type", "application/octet-stream"),
                data=content,
            )
        else:
            fields[name] = content.decode("utf-8")
    return fields, uploads


def _parse_header_lines(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
_CONNECTION_ENDERS = (
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ConnectionError,
    ValueError,
)


class HttpServer:
    """Sequential keep-alive HTTP/1.1 on 127.0.0.1. Each connection is served by its own
    task so that one long-polling `getUpdates` never blocks the bot's other requests,
    which httpx sends over separate pooled connections."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self._handler = handler
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, HOST, self._requested_port, limit=_MAX_HEADER_BYTES
        )

    async def stop(self) -> None:
        """Close the listener and cut open connections; a pending long poll would otherwise
        keep the loop busy until its timeout."""
        if self._server is None:
            return
        self._server.close()
        while self._connections:
            # Repeat: on Python 3.11 asyncio.wait_for can swallow a cancellation that arrives
            # just as the awaited future completes, leaving the connection task alive.
            for task in list(self._connections):
                task.cancel()
            await asyncio.wait(list(self._connections), timeout=0.1)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                try:
                    response = await self._handler(request)
                except Exception as exc:  # keep serving; surface the bug as a 500
                    response = HttpResponse(500, f"emulator error: {exc!r}".encode(), "text/plain")
                keep_alive = _wants_keep_alive(request)
                writer.write(_encode_response(response, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except _CONNECTION_ENDERS:
            pass  # a malformed or dropped request ends the connection, like a real server
        except asyncio.CancelledError:
            # Only stop() cancels these tasks. Ending normally matters: on Python 3.11 the
            # stream protocol calls task.exception() on a cancelled task and logs the error.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = _parse_header_lines(lines[1:])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    parts = urlsplit(target)
    return HttpRequest(
        method.upper(), unquote(parts.path), parts.query, headers, body, version.strip()
    )


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Skip optional trailers up to the blank line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _wants_keep_alive(request: HttpRequest) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _encode_response(response: HttpResponse, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
