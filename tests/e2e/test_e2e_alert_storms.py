"""An alert storm through the running bot: each webhook gets one batched post per level,
each person one digest, against the emulator and a local robot server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.plumbing import AlertRecord
from models.zone.load import load_and_apply
from tests.e2e.test_e2e_escalation import (  # noqa: F401  (robots is a fixture)
    MANAGERS_GROUP,
    SECRET,
    Robots,
    check_signed,
    robots,
    text_of,
)
from tests.harness import start_harness, zone_variant


async def test_a_storm_reaches_each_webhook_as_one_post_per_level(
    tmp_path: Path, robots: Robots, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQUADBOT_TEST_HOOK_SECRET", SECRET)
    hooks = "\n".join(
        f'    - {{kind: {kind}, url: "{robots.url("/" + kind)}?key=k-{kind}"{secret}}}'
        for kind, secret in (
            ("json", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
            ("wecom", ""),
            ("feishu", ", secret_env: SQUADBOT_TEST_HOOK_SECRET"),
        )
    )
    variant = zone_variant(
        tmp_path,
        **{
            "  webhooks: []\n": f"  webhooks:\n{hooks}\n",
            "  managers_chat: null": f"  managers_chat: {MANAGERS_GROUP}",
            "managers:\n": "alerts: {storm_threshold: 5, storm_window: 2m}\nmanagers:\n",
        },
    )

    def configure(engine: Engine) -> None:
        load_and_apply(engine, variant)

    h = await start_harness(tmp_path, configure=configure)
    try:
        await h.join("yang.fan", "enterprise", project="HV01")
        lead = await h.join("ma.lin", "lead", squad="HV")
        top = await h.join("wang.fang", "manager")
        h.emu.add_group(MANAGERS_GROUP, "管委会督办群", [top])
        filed = h.clock.now()
        numbers = []
        for i in range(8):
            h.clock.set(filed + timedelta(seconds=i))
            numbers.append(await h.file_ticket("yang.fan", "杆线迁移", f"电杆挡路 {i}"))
        # the bot was busy elsewhere: every handling breach falls due at once
        h.clock.set(filed + timedelta(hours=2, minutes=1))
        for path in ("/json", "/wecom", "/feishu"):
            await h.emu.wait_for(robots.posted(path, 1), recheck=0.05)
        await h.said(lead, "集中超时")
        await h.said(top, "集中超时")
        await h.said(MANAGERS_GROUP, "集中超时")
        h.clock.set(filed + timedelta(hours=3, minutes=1))
        for path in ("/json", "/wecom", "/feishu"):
            await h.emu.wait_for(robots.posted(path, 2), recheck=0.05)
        await h.said(top, "集中督办通知")
        await h.settle()
        await asyncio.sleep(0.3)  # long enough for a wrongly repeated post to show up
    finally:
        await h.stop()

    for path in ("/json", "/wecom", "/feishu"):
        got = robots.got(path)
        assert len(got) == 2, path
        for request in got:
            check_signed(request)
        first, second = (text_of(r) for r in got)
        assert "集中超时" in first and "集中督办" in second
        assert numbers[0] in first and numbers[-1] in first
        assert "{" not in first + second
    assert [r.json()["level"] for r in robots.got("/json")] == ["breach", "supervision"]
    assert [r.json()["ticket"] for r in robots.got("/json")] == [None, None]
    # told once, but the ledger keeps every ticket's breach and supervision
    with Session(h.engine) as session:
        levels = session.exec(
            select(AlertRecord.level, func.count()).group_by(AlertRecord.level)
        ).all()
    assert dict(levels)["breach"] >= 8 and dict(levels)["supervision"] == 8
    assert sum(1 for text in h.texts(lead) if "集中超时" in text) == 1
