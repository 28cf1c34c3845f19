"""/healthz and /metrics of the running bot, served over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.health import HealthServer, Thresholds
from bot.settings import SettingsError, load_settings, parse_listen
from tests.e2e.builders import filed_ticket, zone_with_people
from tests.harness import Harness


@pytest.fixture
async def served(harness: Harness) -> AsyncIterator[tuple[Harness, str]]:
    server = HealthServer(harness.service.monitor, "127.0.0.1", 0)
    await server.start()
    try:
        yield harness, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        return await client.get(url)


async def _until(url: str, status: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = await _get(url)
        if answer.status_code == status:
            body: dict[str, Any] = answer.json()
            return body
        assert time.monotonic() < deadline, (status, answer.status_code, answer.text)
        await asyncio.sleep(0.1)


async def test_healthz_is_200_with_every_figure(served: tuple[Harness, str]) -> None:
    _h, base = served
    body = await _until(f"{base}/healthz", 200, 5.0)
    assert body["status"] == "ok" and body["problems"] == []
    assert body["database"] is True and body["migrations_at_head"] is True
    assert body["outbox_backlog"] >= 0 and body["outbox_oldest_age_seconds"] >= 0
    assert body["timer_lag_seconds"] == 0 and body["failing_loops"] == {}
    assert body["bot_api_silence_seconds"] < 5
    assert body["polling"] is True  # the one process: it polls getUpdates
    assert (await _get(f"{base}/nowhere")).status_code == 404


async def test_healthz_goes_503_while_the_bot_api_is_unreachable_and_back(
    served: tuple[Harness, str],
) -> None:
    h, base = served
    await _until(f"{base}/healthz", 200, 5.0)
    # silence counts beyond the long poll (1 s here): 0.3 s more and it is a problem
    h.service.monitor.thresholds = Thresholds(api_silence=0.3)
    h.emu.fail_next("getUpdates", 502, count=4)  # backoff 0.5 + 1 + 2 + 4 s
    down = await _until(f"{base}/healthz", 503, 8.0)
    assert down["status"] == "unhealthy"
    assert any("Bot API" in p for p in down["problems"]), down
    # unhealthy once the silence passes 1.3 s; the body rounds it to the millisecond
    assert down["bot_api_silence_seconds"] >= 1.3
    up = await _until(f"{base}/healthz", 200, 15.0)
    assert up["problems"] == []


async def test_healthz_names_a_loop_that_keeps_failing_and_a_late_timer(
    served: tuple[Harness, str],
) -> None:
    h, base = served
    state = h.service.supervisor.state("outbox")
    state.failures_in_a_row = 5
    state.last_error = "RuntimeError: boom"
    body = await _until(f"{base}/healthz", 503, 5.0)
    assert body["failing_loops"] == {"outbox": "RuntimeError: boom"}
    state.failures_in_a_row = 0
    await _until(f"{base}/healthz", 200, 5.0)


async def test_metrics_parse_and_count(served: tuple[Harness, str]) -> None:
    h, base = served
    await zone_with_people(h)
    await filed_ticket(h)
    h.service.delivery.failures[("webhook", "http_status")] += 2
    answer = await _get(f"{base}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name in (
        "squadbot_updates_handled",
        "squadbot_update_handling_seconds",
        "squadbot_tickets",
        "squadbot_alerts_fired",
        "squadbot_outbox_backlog",
        "squadbot_outbox_send_failures",
        "squadbot_telegram_429",
        "squadbot_webhook_failures",
        "squadbot_timer_lag_seconds",
        "squadbot_bot_api_silence_seconds",
    ):
        assert name in families, name
    handled = sum(
        s.value for s in families["squadbot_updates_handled"].samples if s.name.endswith("_total")
    )
    assert handled >= 1
    tickets = {s.labels["state"]: s.value for s in families["squadbot_tickets"].samples}
    assert sum(tickets.values()) == 1
    robots = [s for s in families["squadbot_webhook_failures"].samples if s.name.endswith("total")]
    assert robots[0].labels == {"reason": "http_status"} and robots[0].value == 2
    count = [
        s for s in families["squadbot_update_handling_seconds"].samples if s.name.endswith("_count")
    ]
    assert count and count[0].value >= 1


async def test_each_service_has_its_own_registry(harness: Harness) -> None:
    other = type(harness.service.monitor)(harness.service)
    assert other.registry is not harness.service.monitor.registry
    json.loads(json.dumps(other.report()[1]))  # the report is plain JSON


def test_the_listen_setting() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert load_settings(health_listen=" ").health_listen is None
    with pytest.raises(SettingsError) as bad:
        load_settings(health_listen="9464")
    assert bad.value.problems == ["SQUADBOT_HEALTH_LISTEN: expected HOST:PORT, e.g. 127.0.0.1:9464"]
