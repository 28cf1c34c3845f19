"""End-to-end harness: the real Application, inbox, outbox and deadline timer running over
HTTP against the Bot API emulator on 127.0.0.1, with the example zone loaded and an injected
clock that tests move instead of sleeping."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.inbox.webhook import WebhookConfig
from bot.outbox import Limits
from bot.sandbox.script import ZoneSession, start_session
from migrations.runner import upgrade
from models.clock import FakeClock
from models.db import make_engine
from models.throttle import FloodLimits
from models.zone.load import load_and_apply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ZONE = ROOT / "examples" / "zone.yaml"
FAST = Limits(
    per_second=1000,
    private_per_second=1000,
    private_burst=1000,
    group_per_minute=60000,
    group_burst=1000,
)

# Scripted people act many times while the fake clock stands still, which no allowance
# refills: the harness lets any number through unless a test sets the limits
# (`h.service.runner.use_limits(FloodLimits())`, as tests/e2e/test_e2e_flood.py does).
# Wrong invite codes keep their real limit.
SCRIPTED = FloodLimits(burst=1_000_000)

# What the harness's bot registers in webhook mode: the proxy's URL, its own listener
WEBHOOK_URL = "https://bot.example.test/telegram/updates"


def webhook_config(secret: str | None = None) -> WebhookConfig:
    """Listening on a free port of 127.0.0.1, with this secret or one drawn now."""
    if secret is None:
        return WebhookConfig(WEBHOOK_URL, "127.0.0.1", 0)
    return WebhookConfig(WEBHOOK_URL, "127.0.0.1", 0, secret)


_template: dict[str, Path] = {}


def zone_variant(folder: Path, **replace: str) -> Path:
    """The example zone file with some of its lines rewritten (each must occur)."""
    source = EXAMPLE_ZONE.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in source, f"not in the example zone: {old!r}"
        source = source.replace(old, new, 1)
    path = folder / f"zone-variant-{len(list(folder.glob('zone-variant-*.yaml')))}.yaml"
    path.write_text(source, encoding="utf-8")
    return path


def zone_database(tmp_path: Path, zone_file: Path = EXAMPLE_ZONE) -> Engine:
    """A migrated SQLite database with the zone loaded; migrated once, copied per test."""
    key = str(zone_file)
    if key not in _template:
        folder = Path(tmp_path.parent) / f"template-{len(_template)}"
        folder.mkdir(exist_ok=True)
        path = folder / "zone.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        load_and_apply(engine, zone_file)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        _template[key] = path
    target = tmp_path / "squadbot.db"
    shutil.copy(_template[key], target)
    return make_engine(f"sqlite:///{target}")


Harness = ZoneSession


async def start_harness(
    tmp_path: Path,
    *,
    flood_limits: bool = False,
    limits: Limits | None = FAST,
    configure: Callable[[Engine], None] | None = None,
    engine: Engine | None = None,
    flood: FloodLimits = SCRIPTED,
    webhook: WebhookConfig | None = None,
) -> Harness:
    """With `engine` (e.g. PostgreSQL), the zone is loaded into it; else a SQLite copy.
    With `webhook`, updates come through Telegram's webhook instead of getUpdates."""
    if engine is None:
        engine = zone_database(tmp_path)
    else:
        load_and_apply(engine, EXAMPLE_ZONE)
    if configure is not None:
        configure(engine)
    session = await start_session(
        engine,
        FakeClock(),
        flood_limits=flood_limits,
        limits=limits,
        data_dir=tmp_path / "data",
        webhook=webhook,
    )
    session.service.runner.use_limits(flood)
    return Harness(emu=session.emu, engine=engine, clock=session.clock, service=session.service)
