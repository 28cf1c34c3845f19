"""Telegram's webhook, received: the HTTP/1.1 side of `squadbot run --webhook`.

Each POST is checked before anything is kept: the `X-Telegram-Bot-Api-Secret-Token` header
must be the secret given to setWebhook (compared in constant time), or the answer is 403 and
nothing is read further or stored. A body that is not JSON, or longer than `MAX_BODY`, is
answered 400 and stored as nothing: it cannot be known by an update id, and Telegram, which
never sends one, would try a real update again. Every other body is stored in the inbox
exactly as the poller stores what getUpdates returns (`bot.inbox.storage`, known by update
id and body digest, so a redelivery is kept once) and only then answered 200; the same
processing loop handles it. A store that is busy is waited for, up to `STORE_PATIENCE`, then
answered 503, which Telegram retries.

Bodies arriving together are committed together (one transaction, one fsync), each answered
when that commit is done. HTTP/1.1 is parsed by h11 on asyncio streams, keep-alive
included, for the reverse proxy in front: the bot listens on 127.0.0.1 and the proxy holds
the TLS certificate. The secret is never logged, nor what a refused request sent instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable

import h11
from sqlalchemy.engine import Engine

from bot.inbox.storage import store_updates
from models.clock import Clock
from models.db import is_transient
from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)

SECRET_HEADER = b"x-telegram-bot-api-secret-token"
MAX_BODY = 1 << 20  # 1 MiB: an update is a few KB; a reply quoting a long message, tens
IDLE_SECONDS = 75.0  # a kept-alive connection with nothing more to say is closed after this
READ_SECONDS = 30.0  # a request must arrive whole within this
STORE_PATIENCE = 10.0  # a busy store is waited for this long, then 503 (Telegram retries)


class _Refused(Exception):
    """Answer with this status and close the connection: the rest of the body is unread."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _GroupCommit:
    """Stores bodies that arrive together in one transaction; each caller waits for the
    commit that holds its body."""

    def __init__(self, engine: Engine, clock: Clock, quiet: QuietLog) -> None:
        self.engine = engine
        self.clock = clock
        self.quiet = quiet
        self._waiting: list[tuple[object, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.new = 0
        self.repeated = 0

    async def store(self, raw: object) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="webhook-store")
        await done

    async def drain(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            raws = [raw for raw, _ in batch]
            try:
                new = await self._commit(raws)
            except Exception as exc:
                if is_transient(exc):
                    for _, done in batch:
                        _settle(done, exc)
                    continue
                self.quiet.error(
                    problem_key("webhook-store", exc),
                    "storing %d webhook update(s) together failed (%s); storing them one by one",
                    len(batch),
                    exc,
                    exc_info=exc,
                )
                await self._one_by_one(batch)
                continue
            self._count(new, len(batch))
            for _, done in batch:
                _settle(done, None)

    async def _one_by_one(self, batch: list[tuple[object, asyncio.Future[None]]]) -> None:
        for raw, done in batch:
            try:
                self._count(await self._commit([raw]), 1)
            except Exception as exc:
                _settle(done, exc)
            else:
                _settle(done, None)

    async def _commit(self, raws: list[object]) -> int:
        """store_updates off the event loop, a busy store retried up to STORE_PATIENCE. The
        commit's fsync (SQLite, synchronous=FULL) or round trip (PostgreSQL) then never
        stalls the handling and the outbox; SQLite's one writer makes a handling commit wait
        at most for this one. Posts that arrive meanwhile make the next batch."""
        deadline = time.monotonic() + STORE_PATIENCE
        delay = 0.05
        while True:
            try:
                return await asyncio.to_thread(store_updates, self.engine, raws, self.clock)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                self.quiet.warning(
                    problem_key("webhook-busy", exc),
                    "the inbox cannot store webhook updates now (%s); retrying",
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _count(self, new: int, given: int) -> None:
        self.new += new
        self.repeated += given - new


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


class WebhookReceiver:
    """Serves POSTs from Telegram (through the reverse proxy) on host:port."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        secret: str,
        host: str,
        port: int,
        *,
        on_stored: Callable[[], None] = lambda: None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.host = host
        self.port = port
        self.max_body = max_body
        self.on_stored = on_stored
        self._secret = secret.encode("ascii")
        self._quiet = QuietLog(log)
        self._commits = _GroupCommit(engine, clock, self._quiet)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0  # wrong or missing secret
        self.bad = 0  # not JSON, or too long

    @property
    def stored(self) -> int:
        """Updates stored for the first time."""
        return self._commits.new

    @property
    def repeated(self) -> int:
        """Updates received again after they were stored (Telegram redelivers)."""
        return self._commits.repeated

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("webhook: receiving updates on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting; a request being stored is answered first, then every connection
        is closed."""
        if self._server is None:
            return
        self._server.close()
        await self._commits.drain()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends the connections still open
        except h11.RemoteProtocolError as exc:  # what was sent is not repeated in the log
            self._quiet.warning("webhook:http", "webhook: refused a request that is not HTTP")
            with contextlib.suppress(Exception):
                _send(conn, writer, exc.error_status_hint, b"bad request\n")
                await writer.drain()
        except Exception as exc:
            self._quiet.error(problem_key("webhook", exc), "webhook: %s", exc, exc_info=exc)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Read and answer one request; True when the connection may carry another."""
        event = await _next_event(conn, reader, IDLE_SECONDS)
        if not isinstance(event, h11.Request):
            return False  # closed by the other side
        try:
            status, body = await self._answer(conn, reader, event)
        except _Refused as refused:
            status, body = refused.status, refused.body
        _send(conn, writer, status, body)
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _answer(
        self, conn: h11.Connection, reader: asyncio.StreamReader, request: h11.Request
    ) -> tuple[int, bytes]:
        headers = dict(request.headers)
        given = headers.get(SECRET_HEADER, b"")
        if not hmac.compare_digest(given, self._secret):
            self.refused += 1
            self._quiet.warning(
                "webhook:secret",
                "webhook: refused a request %s the right secret token (from %s)",
                "with a wrong header instead of" if given else "without",
                _peer(headers),
            )
            raise _Refused(403, b"forbidden\n")
        if request.method != b"POST":
            raise _Refused(405, b"POST only\n")
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.max_body:
            raise self._bad(f"a body of {int(length)} bytes, over {self.max_body}")
        body = await self._body(conn, reader)
        try:
            raw = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise self._bad(f"a body that is not JSON ({type(exc).__name__})") from None
        try:
            await self._commits.store(raw)
        except Exception as exc:
            if is_transient(exc):
                return 503, b"the inbox is busy; send it again\n"
            self._quiet.error(
                problem_key("webhook-keep", exc),
                "webhook: update %s cannot be stored: %s",
                raw.get("update_id") if isinstance(raw, dict) else None,
                exc,
            )
            return 500, b"not stored\n"
        self.on_stored()
        return 200, b""

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        parts = bytearray()
        deadline = time.monotonic() + READ_SECONDS
        while True:
            event = await _next_event(conn, reader, max(0.0, deadline - time.monotonic()))
            if isinstance(event, h11.Data):
                parts += event.data
                if len(parts) > self.max_body:
                    raise self._bad(f"a body of more than {self.max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(parts)
            else:
                raise ConnectionError("the request ended before its body")

    def _bad(self, what: str) -> _Refused:
        self.bad += 1
        self._quiet.warning("webhook:bad-body", "webhook: refused %s; nothing stored", what)
        return _Refused(400, b"bad request\n")


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(64 * 1024), timeout)
        conn.receive_data(data)


def _send(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # IDLE: their request was garbage
        return
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status >= 400:
        headers.append((b"connection", b"close"))
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    if body:
        writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")


def _peer(headers: dict[bytes, bytes]) -> str:
    """Who sent it, as the proxy says (X-Real-IP), for the log line only."""
    real = headers.get(b"x-real-ip") or headers.get(b"x-forwarded-for") or b"?"
    return real.decode("latin-1")[:64]
