"""The report files: charts are PNGs of the promised size whose Chinese labels all have
glyphs (matplotlib's "Glyph ... missing from font" warning is an error here), and the
.xlsx ledger opens with openpyxl holding the month's tickets, squads and ranking, in the
reader's language."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.reports import charts
from bot.reports.export import namer, write_charts, write_workbook
from bot.reports.fonts import chinese_font, use_chinese_font
from models import figures
from models.periods import month_period
from models.ranking import ranking
from models.zone.schema import RankingSection
from tests.figures_data import SH, Book, November, november, sh
from tests.harness import zone_database

NOW = sh(12, 5, 12)
NOV = month_period(2026, 11, SH)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = zone_database(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def month(engine: Engine) -> tuple[Book, November]:
    book = Book(engine)
    return book, november(book)


def draw(fn: object, *args: object) -> None:
    """Draws with matplotlib's warning about a glyph the font lacks (drawn as a box) made
    an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"Glyph .* missing from font")
        fn(*args)  # type: ignore[operator]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_a_chinese_font_is_found() -> None:
    assert chinese_font()


def test_the_glyph_check_catches_a_box() -> None:
    """The net the chart tests rely on: a character no installed font has fails."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    use_chinese_font()
    figure = Figure()
    FigureCanvasAgg(figure)
    figure.add_subplot(1, 1, 1).set_title("专班𠀀")  # CJK extension B: not in the font
    with pytest.raises(UserWarning, match="missing from font"):
        draw(figure.savefig, io.BytesIO())


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_charts_are_pngs_of_the_size_with_every_glyph(
    engine: Engine, month: tuple[Book, November], tmp_path: Path, locale: str
) -> None:
    with Session(engine) as s:
        ranked = ranking(s, NOV, NOW, RankingSection(min_tickets=3))
        days = figures.daily(s, NOV, NOW)
        mix = figures.category_mix(s, NOV)
        names = namer(figures.category_names(s))
    folder = tmp_path / locale
    draw(charts.ranking_chart, ranked, locale, folder / "ranking.png")
    draw(charts.daily_chart, days, NOV, locale, folder / "daily.png")
    draw(charts.category_chart, mix, NOV, locale, names, folder / "categories.png")
    # every category, so each Chinese category name is drawn once
    every = [(code, 1) for code in figures_category_codes(engine)]
    draw(charts.category_chart, every, NOV, locale, names, folder / "all.png")
    for name in ("ranking", "daily", "categories", "all"):
        assert png_size(folder / f"{name}.png") == (charts.WIDTH, charts.HEIGHT)


def figures_category_codes(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted(figures.category_names(s))


def test_charts_of_an_empty_month(engine: Engine, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"Glyph .* missing from font")
        written = write_charts(
            engine,
            month_period(2026, 9, SH),
            NOW,
            tmp_path,
            scope=None,
            rules=RankingSection(),
            locale="zh-CN",
        )
    assert [p.name for p in written] == [
        "ranking-2026-09.png",
        "daily-2026-09.png",
        "categories-2026-09.png",
    ]
    assert all(png_size(p) == (charts.WIDTH, charts.HEIGHT) for p in written)


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute)


def test_the_ledger_workbook(engine: Engine, month: tuple[Book, November], tmp_path: Path) -> None:
    path = tmp_path / "ledger.xlsx"
    count = write_workbook(
        engine,
        NOV,
        NOW,
        path,
        scope=None,
        rules=RankingSection(min_tickets=3),
        locale="zh-CN",
        tz=SH,
    )
    assert count == 11
    book = load_workbook(path)
    assert book.sheetnames == ["工单台账", "专班汇总", "专班排名"]
    tickets = book["工单台账"]
    assert tickets.freeze_panes == "A2"
    assert tickets.auto_filter.ref == "A1:T12"
    assert tickets.column_dimensions["S"].width == 50
    rows = list(tickets.iter_rows(values_only=True))
    header = rows[0]
    assert header[:8] == (
        "工单编号",
        "服务专班",
        "项目",
        "企业",
        "问题类别",
        "紧急程度",
        "状态",
        "提交时间",
    )
    assert "领办领导" in header and "办结情况" in header
    assert len(rows) == 12
    by_number = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    p1 = by_number["PV-0001"]
    # times in Shanghai's time, as the squads read them
    assert p1["提交时间"] == local(11, 3, 10)
    assert p1["首次响应时间"] == local(11, 3, 10, 5)
    assert p1["办结时间"] == local(11, 3, 11)
    assert (p1["响应按时"], p1["办结按时"], p1["计划按时"]) == ("是", "是", None)
    assert (p1["服务专班"], p1["项目"], p1["企业"]) == (
        "光伏组件项目服务专班",
        "光伏组件生产基地",
        "扬中晶曜新能源科技有限公司",
    )
    assert (p1["问题类别"], p1["紧急程度"], p1["状态"]) == ("临时停水", "一般", "已关闭")
    assert (p1["负责人"], p1["满意度"], p1["领办领导"]) == ("周军", 5, None)
    p2 = by_number["PV-0002"]
    assert (p2["响应按时"], p2["办结按时"]) == ("否", "否")
    p4 = by_number["PV-0004"]
    assert (p4["办结按时"], p4["办结情况"], p4["状态"]) == ("是", "临时供水已接通", "已办结待确认")
    p5 = by_number["PV-0005"]
    assert (p5["计划按时"], p5["办结按时"], p5["计划敲定时间"]) == ("是", "否", local(11, 7, 5))
    h2 = by_number["HV-0011"]
    assert (h2["响应按时"], h2["办结按时"], h2["状态"]) == ("是", None, "待企业补充")
    assert "PV-0008" not in by_number and "PV-0009" not in by_number  # O1, D1: not November's
    assert by_number["PV-0007"]["提交时间"] == local(11, 30, 23, 50)

    squads = book["专班汇总"]
    assert squads.freeze_panes == "A2" and squads.auto_filter.ref == "A1:R10"
    summary = {row[0]: row for row in squads.iter_rows(min_row=2, values_only=True)}
    pv = summary["PV"]
    assert pv[1:5] == ("光伏组件项目服务专班", 7, 2, 6)
    assert pv[5:8] == (round(5 / 7, 4), round(4 / 7, 4), 1.0)
    assert pv[8:12] == (5.0, 15.0, 3.0, 30.0)  # minutes, then hours
    assert pv[12:18] == (1, 2, 0, round(1 / 6, 4), 3.5, 4)
    total = summary[None]
    assert total[1:5] == ("合计", 11, 5, 7)
    pv_row = next(row for row in squads.iter_rows(min_row=2) if row[0].value == "PV")
    assert pv_row[5].number_format == "0.0%"

    ranked = list(book["专班排名"].iter_rows(values_only=True))
    assert ranked[0][:3] == ("名次", "服务专班", "工单数")
    assert ranked[1] == (
        1,
        "光伏组件项目服务专班",
        7,
        round(5 / 7, 4),
        round(4 / 7, 4),
        3.5,
        65.43,
        "新上榜",
        "流动红旗",
    )
    assert ranked[2][:2] == (2, "高压电气项目服务专班") and ranked[2][8] is None
    assert len(ranked) == 9


def test_an_english_ledger_for_one_squad(
    engine: Engine, month: tuple[Book, November], tmp_path: Path
) -> None:
    book, _ = month
    path = tmp_path / "hv.xlsx"
    scope = {book.squads["HV"]}
    count = write_workbook(
        engine, NOV, NOW, path, scope=scope, rules=RankingSection(), locale="en", tz=SH
    )
    assert count == 4
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Tickets", "Squads", "Ranking"]
    rows = list(workbook["Tickets"].iter_rows(values_only=True))
    assert rows[0][:3] == ("Ticket", "Squad", "Project")
    assert {row[1] for row in rows[1:]} == {"高压电气项目服务专班"}
    # H1, never claimed
    assert rows[1][4:7] == ("Temporary water outage", "Normal", "Unclaimed")
    squads = list(workbook["Squads"].iter_rows(values_only=True))
    assert [row[0] for row in squads[1:]] == ["HV", None]
    ranked = list(workbook["Ranking"].iter_rows(values_only=True))
    assert len(ranked) == 2 and ranked[1][0] is None and ranked[1][1] == "高压电气项目服务专班"


def test_an_empty_month_still_makes_a_workbook(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    count = write_workbook(
        engine,
        month_period(2026, 9, SH),
        NOW,
        path,
        scope=None,
        rules=RankingSection(),
        locale="zh-CN",
        tz=SH,
    )
    assert count == 0
    sheet = load_workbook(path)["工单台账"]
    assert sheet.max_row == 1 and sheet.auto_filter.ref == "A1:T1"


def test_squadbot_report_writes_the_month(
    engine: Engine,
    month: tuple[Book, November],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli import main
    from bot.commands import report as command

    monkeypatch.setenv("SQUADBOT_DATABASE_URL", engine.url.render_as_string(False))
    monkeypatch.delenv("SQUADBOT_TELEGRAM_TOKEN", raising=False)
    monkeypatch.setattr(command, "LARGE", 5)  # a bar for a month this small, too
    out = tmp_path / "report"
    assert main(["report", "--month", "2026-11", "--out", str(out), "--lang", "en"]) == 0
    printed = capsys.readouterr().out
    assert "ledger-2026-11.xlsx  (11 tickets)" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "categories-2026-11.png",
        "daily-2026-11.png",
        "ledger-2026-11.xlsx",
        "ranking-2026-11.png",
    ]
    book = load_workbook(out / "ledger-2026-11.xlsx")
    assert book.sheetnames == ["Tickets", "Squads", "Ranking"]
    assert book["Tickets"].max_row == 12
    assert all(png_size(out / n) == (charts.WIDTH, charts.HEIGHT) for n in names if ".png" in n)
    assert main(["report", "--month", "2026-13", "--out", str(out)]) == 2
    assert "--month" in capsys.readouterr().err


def test_text_the_sheet_xml_must_escape(engine: Engine, tmp_path: Path) -> None:
    """Markup and control characters in what enterprises write come out as text."""
    book = Book(engine)
    book.ticket("PV", sh(11, 3, 9), description='<b>水&电</b> "急"\x0b\x00 ')
    path = tmp_path / "odd.xlsx"
    write_workbook(
        engine, NOV, NOW, path, scope=None, rules=RankingSection(), locale="zh-CN", tz=SH
    )
    row = next(load_workbook(path)["工单台账"].iter_rows(min_row=2, values_only=True))
    assert row[18] == '<b>水&电</b> "急" '
