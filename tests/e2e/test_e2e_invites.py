"""Invites and the admin's commands over HTTP: an enterprise contact never reaches a squad's
internal notes by any invite, revoked and withdrawn invites are refused in the chat, and
/invite, /reload, /chatid and /ticket answer each role as `may` says."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from bot.i18n import t
from handlers.admin import use_zone_file
from models.invites import revoke_invite
from models.people import actor_for
from models.zone.load import load_and_apply
from tests.e2e.builders import claimed_ticket, zone_with_people
from tests.harness import EXAMPLE_ZONE, Harness, zone_variant

NOTE = "供水公司说要三天，先别告诉企业"
GROUP = -1009990001


def zh(key: str, **params: object) -> str:
    return t("zh-CN", key, **params)


async def answer(
    h: Harness, chat: int, text: str, needle: str, *, sender: int | None = None
) -> str:
    """Send `text` (from `sender`, in `chat`) and wait for the next message with `needle`."""
    count = sum(needle in said for said in h.texts(chat)) + 1
    h.emu.send_text(sender if sender is not None else chat, text, chat_id=chat)
    found = await h.said(chat, needle, count=count)
    return str(found.get("text") or "")


async def silent(h: Harness, chat: int, text: str, sender: int) -> None:
    """Send `text` and check the bot says nothing in the chat."""
    before = len(h.texts(chat))
    h.emu.send_text(sender, text, chat_id=chat)
    await h.settle()
    assert h.texts(chat)[before:] == []


async def test_an_enterprise_contact_never_reaches_internal_notes_by_any_invite(
    any_harness: Harness,
) -> None:
    h = any_harness
    people = await zone_with_people(h)
    number, _ = await claimed_ticket(h)
    member, ent = people.members["zhou.jun"], people.enterprise
    await answer(h, member, f"/note {number} {NOTE}", "内部备注已记录")
    admin = await h.join("qiu.ping", "admin")

    # Every invite an admin can make, for every staff seat, opened by the contact's account.
    someone_else = zh("invite.already_someone_else")
    for role, where in (
        ("member", {"squad": "PV", "person": "xu.hui"}),
        ("lead", {"squad": "HV", "person": "ma.lin"}),
        ("manager", {"person": "wang.fang"}),
        ("admin", {"person": "qiu.ping"}),  # already bound to the admin
    ):
        code = h.invite(role, **where)
        assert someone_else in await answer(h, ent, f"/start {code}", someone_else)
    group_code = h.invite("group", squad="PV")
    text = zh("invite.group_code_in_private")
    assert text in await answer(h, ent, f"/start {group_code}", text)
    h.emu.add_group(GROUP, "钱浩的群", [ent])
    text = zh("invite.bind_needs_lead")
    assert text in await answer(h, GROUP, f"/bind {group_code}", text, sender=ent)
    # a walk-in invite is an enterprise role: it gives nothing more
    await answer(h, ent, f"/start {h.invite('enterprise')}", "企业联系人")

    # The admin cannot make a staff invite for the contact, in the chat or anywhere else.
    for command in (
        "/invite member PV qian.hao",
        "/invite lead PV qian.hao",
        "/invite manager qian.hao",
        "/invite admin qian.hao",
    ):
        said = await answer(h, admin, command, "企业联系人，不能绑定为开发区工作人员")
        assert "t.me" not in said

    with Session(h.engine) as session:
        actor = actor_for(session, ent)
        assert actor is not None and actor.roles() == {"enterprise"}
    await answer(h, ent, f"/ticket {number}", f"工单 {number}｜")
    h.emu.send_text(ent, "/my")
    await h.settle()
    assert not any(NOTE in said for said in h.texts(ent))
    assert not any(NOTE in said for said in h.texts(GROUP))
    # ...while the squad and the admin do read it
    await answer(h, member, f"/ticket {number}", NOTE)
    await answer(h, admin, f"/ticket {number}", NOTE)


async def test_staff_cannot_join_as_a_walk_in_enterprise(any_harness: Harness) -> None:
    h = any_harness
    lead = await h.join("liu.yang", "lead", squad="PV")
    text = zh("invite.staff_not_enterprise")
    assert text in await answer(h, lead, f"/start {h.invite('enterprise')}", text)
    h.emu.send_text(lead, "/new")
    await h.said(lead, zh("error.not_enterprise"))


async def test_revoked_and_withdrawn_invites_are_refused_in_the_chat(
    any_harness: Harness, tmp_path: Path
) -> None:
    h = any_harness
    zhou = await h.join("zhou.jun", "member", squad="PV")
    spare = h.invite("member", squad="PV", person="zhou.jun")  # made while he is in the file
    revoked = h.invite("member", squad="PV", person="xu.hui")
    removed = h.invite("member", squad="PV", person="wu.gang")
    with Session(h.engine) as session:
        assert revoke_invite(session, h.clock.now(), revoked)[0] == "revoked"
        session.commit()
    load_and_apply(
        h.engine,
        zone_variant(tmp_path, **{"members: [zhou.jun, xu.hui, wu.gang]": "members: [xu.hui]"}),
    )

    # a revoked code answers as an unknown one
    newcomer = await h.stranger("徐慧")
    unknown = zh("invite.unknown")
    assert await answer(h, newcomer, f"/start {revoked}", unknown) == unknown
    assert await answer(h, newcomer, "/start no-such-code", unknown) == unknown
    # a person taken out of the file cannot join, nor come back, through an unexpired invite
    withdrawn = zh("invite.withdrawn")
    other = await h.stranger("吴刚")
    assert await answer(h, other, f"/start {removed}", withdrawn) == withdrawn
    assert await answer(h, zhou, f"/start {spare}", withdrawn) == withdrawn
    assert await answer(h, zhou, "/my", zh("start.no_role")) == zh("start.no_role")
    with Session(h.engine) as session:
        for user in (newcomer, other, zhou):
            actor = actor_for(session, user)
            assert actor is None or not actor.has_role


async def test_admin_commands_answer_each_role_as_may_says(
    any_harness: Harness, tmp_path: Path
) -> None:
    h = any_harness
    use_zone_file(h.service.app, EXAMPLE_ZONE)
    people = await zone_with_people(h)
    number, _ = await claimed_ticket(h)
    await answer(h, people.members["zhou.jun"], f"/note {number} {NOTE}", "内部备注已记录")
    admin = await h.join("qiu.ping", "admin")
    manager = await h.join("wang.fang", "manager")
    stranger = await h.stranger()
    chats = {
        "admin": admin,
        "manager": manager,
        "lead": people.lead,
        "member": people.members["zhou.jun"],
        "enterprise": people.enterprise,
        "nobody": stranger,
    }
    h.emu.add_group(GROUP, "管委会群", list(chats.values()))
    not_allowed, no_role = zh("error.not_allowed"), zh("start.no_role")

    for role, chat in chats.items():
        refusal = no_role if role == "nobody" else not_allowed
        if role == "admin":
            link = await answer(h, chat, "/invite member PV xu.hui", "t.me/")
            assert "徐慧 (xu.hui, PV)" in link and "有效期至" in link
            report = await answer(h, chat, "/reload", "已加载")
            assert report.endswith("没有变化")
        else:
            assert await answer(h, chat, "/invite member PV xu.hui", refusal) == refusal
            assert await answer(h, chat, "/reload", refusal) == refusal
            await silent(h, GROUP, "/reload", chat)  # refusals are not said in a group
        if role in ("admin", "manager"):
            said = await answer(h, GROUP, "/chatid", "chat id", sender=chat)
            assert f"managers_chat: {GROUP}" in said
            assert zh("chatid.only_in_group") == await answer(
                h, chat, "/chatid", zh("chatid.only_in_group")
            )
        else:
            await silent(h, GROUP, "/chatid", chat)
        if role in ("admin", "manager", "lead", "member"):
            await answer(h, chat, f"/ticket {number}", NOTE)
        elif role == "enterprise":
            await answer(h, chat, f"/ticket {number}", f"工单 {number}｜")
        else:
            assert await answer(h, chat, f"/ticket {number}", no_role) == no_role
    assert not any(NOTE in said for said in h.texts(people.enterprise))
    help_text = await answer(h, admin, "/help", "管理员可以")
    assert "/invite" in help_text and "/reload" in help_text

    # the link the admin was given works, for the person it names
    link = next(said for said in h.texts(admin) if "t.me/" in said)
    code = link.rsplit("start=", 1)[1].strip()
    xu = await h.stranger("徐慧")
    await answer(h, xu, f"/start {code}", "您已加入服务专班")


async def test_admin_invites_refuse_what_the_zone_file_does_not_say(any_harness: Harness) -> None:
    h = any_harness
    admin = await h.join("qiu.ping", "admin")
    for command, expected in (
        ("/invite", "用法：\n/invite enterprise"),
        ("/invite manager wang.fang PV", "用法："),
        ("/invite emperor", "未知角色「emperor」"),
        ("/invite member PV", "专班成员邀请：缺少人员。"),
        ("/invite member PV liu.yang", "区域文件里「liu.yang」不是专班 PV 的成员。"),
        ("/invite lead NOPE liu.yang", "区里没有专班「NOPE」。"),
        ("/invite enterprise PV01", "项目 PV01 的企业邀请须指定其一位联系人：qian.hao, shi.lei。"),
        (
            "/invite enterprise PV01 liu.yang",
            "「liu.yang」是开发区工作人员，不能绑定为企业联系人。",
        ),
    ):
        said = await answer(h, admin, command, expected)
        assert "t.me" not in said, command
    walk_in = await answer(h, admin, "/invite enterprise", "t.me/")
    assert "一位新企业联系人" in walk_in
    group = await answer(h, admin, "/invite group PV", "/bind ")
    assert "专班 PV 的群绑定码" in group and "t.me" not in group
    h.emu.add_group(GROUP, "群", [admin])
    use_private = zh("group.use_private")
    assert await answer(h, GROUP, "/invite group PV", use_private, sender=admin) == use_private


async def test_reload_reports_like_org_load_and_refuses_a_bad_file(
    any_harness: Harness, tmp_path: Path
) -> None:
    h = any_harness
    admin = await h.join("qiu.ping", "admin")
    zhou = await h.join("zhou.jun", "member", squad="PV")
    no_file = zh("reload.no_file")
    assert await answer(h, admin, "/reload", no_file) == no_file

    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_ZONE.read_text(encoding="utf-8").replace("lead: liu.yang", "leader: x"))
    use_zone_file(h.service.app, bad)
    refused = await answer(h, admin, "/reload", "未通过检查")
    assert f"{bad}:" in refused and "unknown field" in refused
    with Session(h.engine) as session:  # nothing changed: still a member
        actor = actor_for(session, zhou)
        assert actor is not None and actor.is_squad_member

    without = zone_variant(
        tmp_path,
        **{
            "members: [zhou.jun, xu.hui, wu.gang]": "members: [xu.hui, wu.gang]",
            "managers_chat: null": f"managers_chat: {GROUP}",
        },
    )
    use_zone_file(h.service.app, without)
    report = await answer(h, admin, "/reload", "已加载")
    assert "职责：新增 0，更新 0，停用 1" in report and "设置：新增 0，更新 1，停用 0" in report
    assert await answer(h, zhou, "/my", zh("start.no_role")) == zh("start.no_role")
    h.emu.add_group(GROUP, "管委会群", [admin])
    said = await answer(h, GROUP, "/chatid", "chat id", sender=admin)
    assert said == zh("chatid.is_managers", chat_id=GROUP)
