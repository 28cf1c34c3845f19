"""The monthly ranking and the overdue list, on months worked out by hand: scores from the
zone's weights, ties broken by volume, too few tickets listed but not ranked, movement
against the month before, the red flag; overdue tickets oldest first, by the same "on
time" as every figure. SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.figures import Figures, Rate
from models.overdue import overdue
from models.periods import month_period
from models.ranking import ranking, score
from models.zone.load import load_and_apply
from models.zone.schema import RankingSection, RankingWeights
from tests.figures_data import HOUR, MIN, SH, Book, november, sh
from tests.harness import EXAMPLE_ZONE, zone_database

NOW = sh(12, 5, 12)
NOV = month_period(2026, 11, SH)
THREE = RankingSection(min_tickets=3)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        pg: Engine = request.getfixturevalue("pg_engine")
        load_and_apply(pg, EXAMPLE_ZONE)
        yield pg
        return
    sqlite = zone_database(tmp_path)
    yield sqlite
    sqlite.dispose()


def perfect(book: Book, squad: str, month: int, count: int, rating: int | None = None) -> None:
    for n in range(count):
        filed = sh(month, 2 + n, 9)
        book.ticket(squad, filed, first=5 * MIN, resolved=HOUR, rating=rating)


def late_handling(book: Book, squad: str, month: int, count: int) -> None:
    for n in range(count):
        book.ticket(squad, sh(month, 2 + n, 9), first=5 * MIN, resolved=3 * HOUR)


def test_score_is_the_weighted_mean_of_what_there_is() -> None:
    weights = RankingWeights()
    full = Figures(
        1, "A", "A", reply=Rate(5, 7), handling=Rate(4, 7), rating_sum=14, rating_count=4
    )
    # 100 * (0.4 * 5/7 + 0.4 * 4/7 + 0.2 * 3.5/5)
    assert score(full, weights) == 65.43
    unrated = Figures(1, "A", "A", reply=Rate(1, 1), handling=Rate(0, 2))
    assert score(unrated, weights) == 50.0  # (0.4 * 1 + 0.4 * 0) / 0.8
    assert score(Figures(1, "A", "A"), weights) is None
    only_reply = RankingWeights(reply=1, handling=0, satisfaction=0)
    assert score(full, only_reply) == 71.43


def test_november_by_hand(engine: Engine) -> None:
    book = Book(engine)
    november(book)
    with Session(engine) as s:
        default = ranking(s, NOV, NOW, RankingSection())
        three = ranking(s, NOV, NOW, THREE)
    # with 5 tickets needed only PV (7) is ranked; HV has 4, the rest none
    assert [(x.code, x.rank) for x in default.standings][:3] == [
        ("PV", 1),
        ("CHIP", None),
        ("ESS", None),
    ]
    assert default.red_flag is not None and default.red_flag.code == "PV"
    # PV: reply 5/7, handling 4/7, rating 3.5; HV: 3/4, 1/3, 5.0
    assert [(x.code, x.score, x.rank) for x in three.standings[:2]] == [
        ("PV", 65.43, 1),
        ("HV", 63.33, 2),
    ]
    # October had one ticket: nobody was ranked then
    assert [x.movement for x in three.standings[:2]] == ["new", "new"]
    assert three.ranked == 2
    assert {x.code for x in three.standings if x.rank is None} == {
        "WINDOW",
        "EV",
        "H2",
        "ESS",
        "CHIP",
        "PORT",
    }


def test_ties_volume_movement_and_the_red_flag(engine: Engine) -> None:
    book = Book(engine)
    # October: EV 100 with 4 tickets, PV 100 with 3, HV 50 (handling late)
    perfect(book, "EV", 10, 4)
    perfect(book, "PV", 10, 3)
    late_handling(book, "HV", 10, 3)
    # November: HV 100 with 4, PV 100 with 3, CHIP 96 (rated 4), EV 50; H2 has 2 tickets
    perfect(book, "HV", 11, 4)
    perfect(book, "PV", 11, 3)
    perfect(book, "CHIP", 11, 3, rating=4)
    late_handling(book, "EV", 11, 3)
    perfect(book, "H2", 11, 2)
    with Session(engine) as s:
        october = ranking(s, month_period(2026, 10, SH), NOW, THREE)
        found = ranking(s, NOV, NOW, THREE)
    assert [(x.code, x.rank) for x in october.standings[:3]] == [
        ("EV", 1),
        ("PV", 2),
        ("HV", 3),
    ]
    ranked = [(x.code, x.score, x.rank, x.movement, x.places) for x in found.standings[:4]]
    assert ranked == [
        ("HV", 100.0, 1, "up", 2),
        ("PV", 100.0, 2, "same", 0),
        ("CHIP", 96.0, 3, "new", 0),
        ("EV", 50.0, 4, "down", 3),
    ]
    h2 = next(x for x in found.standings if x.code == "H2")
    assert (h2.tickets, h2.rank, h2.movement, h2.score) == (2, None, None, 100.0)
    assert found.red_flag is not None and found.red_flag.code == "HV"
    assert [x.code for x in found.standings if x.red_flag] == ["HV"]
    assert [x.code for x in found.only({book.squads["PV"]})] == ["PV"]


def test_an_empty_month_ranks_nobody(engine: Engine) -> None:
    with Session(engine) as s:
        found = ranking(s, month_period(2026, 9, SH), NOW, RankingSection())
    assert found.ranked == 0 and found.red_flag is None
    assert len(found.standings) == 8 and all(x.tickets == 0 for x in found.standings)


def test_overdue_oldest_first_with_squad_owner_and_lateness(engine: Engine) -> None:
    book = Book(engine)
    ids = november(book).ids
    with Session(engine) as s:
        found, total = overdue(s, NOW)
        hv_only, hv_total = overdue(s, NOW, {book.squads["HV"]})
        first_two, still = overdue(s, NOW, limit=2)
    # H1: reply due 10 Nov 09:10; H3: paused after handling was due 12 Nov 11:00; P5: plan
    # target 20 Nov 18:00; D1: reply due 1 Dec 00:10. H2 waits with time left: not late.
    number = numbers(engine, ids)
    assert [(o.number, o.deadline, o.owner) for o in found] == [
        (number["H1"], "response", None),
        (number["H3"], "handling", "胡斌"),
        (number["P5"], "plan_target", "吴刚"),
        (number["D1"], "response", None),
    ]
    assert total == 4
    assert found[0].squad == "高压电气项目服务专班"
    assert found[0].due == sh(11, 10, 9, 10)
    assert found[0].late_s == int((NOW - sh(11, 10, 9, 10)).total_seconds())
    assert found[3].late_s == int((NOW - sh(12, 1, 0, 10)).total_seconds())
    assert [o.deadline for o in hv_only] == ["response", "handling"] and hv_total == 2
    assert len(first_two) == 2 and still == 4


def test_overdue_follows_the_paused_clock_and_extensions(engine: Engine) -> None:
    book = Book(engine)
    filed = sh(11, 20, 9)
    # claimed at 09:05, handling extended to 15:00 (6 h): not overdue at 13:00, overdue at 15:01
    book.ticket("PV", filed, first=5 * MIN, handling_in=6 * HOUR, owner="zhou.jun")
    # waiting with an hour left, its stored deadline long passed: never overdue while paused
    book.ticket(
        "PV", filed, first=5 * MIN, state="waiting", handling_remaining_s=3600, owner="xu.hui"
    )
    with Session(engine) as s:
        assert overdue(s, filed + 4 * HOUR) == ([], 0)
        late, total = overdue(s, filed + 6 * HOUR + MIN)
    assert total == 1 and late[0].owner == "周军" and late[0].late_s == 60
    assert late[0].due == filed + timedelta(hours=6)


def numbers(engine: Engine, ids: dict[str, int]) -> dict[str, str]:
    from models.ticket import Ticket

    with Session(engine) as s:
        found = {key: s.get(Ticket, tid) for key, tid in ids.items()}
    return {key: ticket.number for key, ticket in found.items() if ticket is not None}
