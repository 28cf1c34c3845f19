"""`squadbot run` and `squadbot sandbox`.

`run` starts in steps, each of which either succeeds or ends the command with one line:
the database (named first, migrated), the zone file if SQUADBOT_ZONE_FILE is set, the data
folder, then the Bot API (`bot.startup`: reachable, through the proxy, accepting the token).
With `--retry-start` (or SQUADBOT_RETRY_START=true), as a service would run it, a database or
Bot API that cannot be reached yet is retried with backoff, saying so each time, the same
way the running bot retries once it has started.

`run --webhook URL --listen HOST:PORT` receives the updates from Telegram's webhook instead
of polling (`bot.inbox.webhook`): URL is the reverse proxy's https:// address, HOST:PORT
where the bot listens behind it.
Several `run` processes may share one PostgreSQL database (bot/service.py), each doing
everything or, with `--only`, some of it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from bot.commands.common import announce_database, database_label, open_database, zone_loaded
from bot.commands.help import command_parser
from bot.settings import ROLES, Settings, parse_listen
from bot.startup import BotIdentity, Failure, check_bot_api, masked_url, proxy_for, retrying
from models.clock import SystemClock
from models.throttle import FloodLimits

if TYPE_CHECKING:
    from bot.inbox.webhook import WebhookConfig

log = logging.getLogger("squadbot")

RUN_SETTINGS = (
    "SQUADBOT_TELEGRAM_TOKEN",
    "SQUADBOT_DATABASE_URL",
    "SQUADBOT_TELEGRAM_API_URL",
    "SQUADBOT_PROXY_URL",
    "SQUADBOT_RETRY_START",
    "SQUADBOT_ZONE_FILE",
    "SQUADBOT_DATA_DIR",
    "SQUADBOT_LANGUAGE",
    "SQUADBOT_LONG_POLL_SECONDS",
    "SQUADBOT_FLOOD_BURST",
    "SQUADBOT_FLOOD_PER_SECOND",
    "SQUADBOT_FLOOD_NOTICE_SECONDS",
    "SQUADBOT_INVITE_GUESSES_PER_HOUR",
    "SQUADBOT_SEND_PER_SECOND",
    "SQUADBOT_LEASE_SECONDS",
    "SQUADBOT_HEALTH_LISTEN",
    "SQUADBOT_HEALTH_MAX_API_SILENCE",
    "SQUADBOT_HEALTH_MAX_OUTBOX_AGE",
    "SQUADBOT_HEALTH_MAX_OUTBOX_BACKLOG",
    "SQUADBOT_HEALTH_MAX_TIMER_LAG",
    "SQUADBOT_WEBHOOK_SECRET",
)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    webhook = webhook_config(settings, args)
    if settings.telegram_token is None:
        return cmd_sandbox(settings, args, no_token=True)
    retry = bool(getattr(args, "retry_start", False)) or settings.retry_start
    roles = frozenset(getattr(args, "only", None) or ROLES)
    return asyncio.run(
        _run_bot(settings, settings.telegram_token, retry=retry, webhook=webhook, roles=roles)
    )


def webhook_config(settings: Settings, args: argparse.Namespace) -> WebhookConfig | None:
    """`--webhook URL --listen HOST:PORT`, both or neither; None: long polling."""
    from bot.inbox.webhook import WebhookConfig, url_problem

    url: str | None = getattr(args, "webhook", None)
    listen: str | None = getattr(args, "listen", None)
    if url is None and listen is None:
        return None
    if url is None or listen is None:
        raise Failure("--webhook URL and --listen HOST:PORT go together")
    if settings.telegram_token is None:
        raise Failure("--webhook needs SQUADBOT_TELEGRAM_TOKEN")
    problem = url_problem(url)
    if problem:
        raise Failure(f"--webhook: {problem}")
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise Failure(f"--listen: {exc}") from None
    if settings.webhook_secret is None:
        return WebhookConfig(url, host, port)  # a secret drawn now, for this run
    return WebhookConfig(url, host, port, settings.webhook_secret)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _open(settings: Settings) -> Engine:
    return open_database(settings, create=True, announce=False)


def _load_zone_file(settings: Settings, engine: Engine) -> None:
    if settings.zone_file is None:
        return
    from models.zone.load import load_and_apply
    from models.zone.reader import ZoneFileError

    try:
        report = load_and_apply(engine, settings.zone_file)
    except ZoneFileError as exc:
        raise Failure(f"SQUADBOT_ZONE_FILE: {exc}") from None
    except OSError as exc:
        raise Failure(f"SQUADBOT_ZONE_FILE: {settings.zone_file}: {exc.strerror}") from None
    for line in report.lines():
        log.info("zone file %s: %s", settings.zone_file, line)


def _time_zone(engine: Engine) -> str:
    from sqlmodel import Session

    from models.zone.config import read_zone

    with Session(engine) as session:
        return read_zone(session).tz.key


def roles_of(value: str) -> frozenset[str]:
    """`--only updates,outbox`: the roles named, each one of ROLES."""
    named = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(named - set(ROLES))
    if not named or unknown:
        raise argparse.ArgumentTypeError(
            f"expected one or more of {', '.join(ROLES)}, separated by commas"
            + (f" (not {', '.join(unknown)})" if unknown else "")
        )
    return frozenset(named)


async def _run_bot(
    settings: Settings,
    token: str,
    *,
    retry: bool,
    webhook: WebhookConfig | None = None,
    roles: frozenset[str] = frozenset(ROLES),
) -> int:
    from bot.application import ZoneCache, build_application
    from bot.health import Thresholds
    from bot.monthly_ranking import MonthlyRanking
    from bot.outbox.pacing import Limits
    from bot.service import Service
    from handlers.admin import use_zone_file

    stop = _stop_event()
    announce_database(database_label(settings.database_url))
    engine = await retrying(lambda: _open(settings), retry=retry, stop=stop)
    if engine is None:
        log.info("stopped before the database could be opened")
        return 0
    _load_zone_file(settings, engine)
    if zone_loaded(engine):
        log.info("time zone %s (the zone file's `timezone`)", _time_zone(engine))
    else:
        log.warning(
            "no zone is loaded yet: load one with `squadbot org load ZONE_FILE` or set "
            "SQUADBOT_ZONE_FILE; meanwhile the defaults apply (time zone %s)",
            _time_zone(engine),
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("data folder %s", settings.data_dir.absolute())

    proxy = proxy_for(settings.telegram_api_url, settings.proxy_url)
    if proxy.url:
        log.info("proxy %s (%s)", masked_url(proxy.url), proxy.source)
    me: BotIdentity | None = await retrying(
        lambda: check_bot_api(token, settings.telegram_api_url, proxy), retry=retry, stop=stop
    )
    if me is None:
        log.info("stopped before the Bot API could be reached")
        return 0
    log.info(
        "connected to the Bot API at %s as @%s (id %d)",
        settings.telegram_api_url,
        me.username,
        me.id,
    )
    app = build_application(
        token,
        base_url=settings.bot_api_base,
        base_file_url=settings.bot_file_base,
        proxy=proxy.url,
    )
    use_zone_file(app, settings.zone_file)  # for an admin's /reload
    service = Service(
        app,
        engine,
        SystemClock(),
        ZoneCache(),
        limits=Limits(per_second=settings.send_per_second),
        long_poll=settings.long_poll_seconds,
        language=settings.language,
        data_dir=settings.data_dir,
        health_listen=settings.health_listen,
        thresholds=Thresholds(
            api_silence=settings.health_max_api_silence,
            outbox_age=settings.health_max_outbox_age,
            outbox_backlog=settings.health_max_outbox_backlog,
            timer_lag=settings.health_max_timer_lag,
        ),
        monthly_ranking=MonthlyRanking(settings.data_dir / "reports"),
        flood=FloodLimits(
            burst=settings.flood_burst,
            per_second=settings.flood_per_second,
            notice_every=timedelta(seconds=settings.flood_notice_seconds),
            guesses=settings.invite_guesses_per_hour,
        ),
        webhook=webhook,
        roles=roles,
        lease_seconds=settings.lease_seconds,
    )
    await service.run_until_stopped(stop)
    log.info("stopped")
    return 0


def cmd_sandbox(settings: Settings, _args: argparse.Namespace, *, no_token: bool = False) -> int:
    from bot.sandbox.script import play

    path = settings.data_dir / "sandbox.db"
    announce_database(f"sqlite:///{path.absolute()} (the sandbox's own, made afresh)")
    return play(settings, no_token=no_token)


def register(sub: Any) -> None:
    run = command_parser(
        sub,
        "run",
        "run the bot (the sandbox demo when no token is set)",
        "Migrate the database, load SQUADBOT_ZONE_FILE if set, check the Bot API (reachable, "
        "through the proxy, accepting the token) and run the bot until SIGINT or SIGTERM. "
        "Several processes may run on one PostgreSQL database: each update, message and alert "
        "is handled once, one process at a time polls getUpdates, and the work of a process "
        "that dies is taken over after SQUADBOT_LEASE_SECONDS (SQLite: one process). "
        "Without SQUADBOT_TELEGRAM_TOKEN it plays the sandbox demo instead.",
        settings=RUN_SETTINGS,
    )
    run.add_argument(
        "--retry-start",
        action="store_true",
        help="keep retrying at start, with backoff up to 30s, while the Bot API, the proxy or "
        "the database cannot be reached (for a service; same as SQUADBOT_RETRY_START=true); "
        "a rejected token or a wrong setting still stops it",
    )
    run.add_argument(
        "--webhook",
        metavar="URL",
        help="receive updates from Telegram's webhook at this https:// URL (a reverse proxy "
        "that passes them to --listen) instead of polling; registered at start, deleted at "
        "stop, checked with SQUADBOT_WEBHOOK_SECRET (drawn at start when unset)",
    )
    run.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="with --webhook: where the bot receives the posts, e.g. 127.0.0.1:8443",
    )
    run.add_argument(
        "--only",
        type=roles_of,
        metavar="ROLES",
        help="do only this part of the work, to split it across processes or machines on one "
        "PostgreSQL database: updates (getUpdates, handling updates, attachments), outbox "
        "(sending), timer (deadline alerts, digests, the monthly ranking); several separated "
        "by commas (default: all three)",
    )
    run.set_defaults(handler=cmd_run)
    command_parser(
        sub,
        "sandbox",
        "play the scripted sandbox demo against the local Bot API emulator",
        "Start the Bot API emulator on 127.0.0.1, load the zone (SQUADBOT_ZONE_FILE or "
        "examples/zone.yaml) into a fresh SQLite database in SQUADBOT_DATA_DIR, play a scripted "
        "session and print the chat transcript. Touches neither Telegram nor "
        "SQUADBOT_DATABASE_URL.",
        settings=("SQUADBOT_ZONE_FILE", "SQUADBOT_DATA_DIR", "SQUADBOT_LANGUAGE"),
    ).set_defaults(handler=cmd_sandbox)
