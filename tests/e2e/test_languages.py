"""Every message that reaches a person is in that person's language, edits included."""

from __future__ import annotations

from tests.e2e.builders import filed_ticket
from tests.harness import Harness


async def test_a_card_edited_after_a_claim_stays_in_its_readers_language(harness: Harness) -> None:
    h = harness
    await h.join("qian.hao", "enterprise", project="PV01")
    lead = await h.join("liu.yang", "lead", squad="PV", language="en")
    member = await h.join("zhou.jun", "member", squad="PV")
    await h.settle()
    filed = await filed_ticket(h)
    await h.settle()
    card = next(
        m for m in h.emu.sent(lead) if "📋" in (m.get("text") or "") and filed.number in m["text"]
    )
    assert card["text"].startswith("📋 New ticket")
    member_card = next(
        m for m in h.emu.sent(member) if "📋" in (m.get("text") or "") and filed.number in m["text"]
    )
    assert "新工单" in member_card["text"]
    h.press("zhou.jun", member_card, "认领")
    await h.settle()
    edited = next(m for m in h.emu.sent(lead) if m["message_id"] == card["message_id"])
    assert edited["edits"], "the lead's card was not edited after the claim"
    assert edited["text"].startswith("📋 New ticket") and "Owner:" in edited["text"]
    again = next(m for m in h.emu.sent(member) if m["message_id"] == member_card["message_id"])
    assert again["edits"] and "新工单" in again["text"]
