"""The zone file's optional `ranking` section: defaults without it, weights and the minimum
read and applied, mistakes refused with their line, and the JSON Schema agreeing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from models.db import make_engine, transaction
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from models.zone.parse import parse_zone
from models.zone.reader import ZoneFileError
from models.zone.schema import RankingSection, RankingWeights
from tests.unit.test_zone_file import MINIMAL
from tests.unit.test_zone_schema import schema_errors

RANKING = "ranking:\n  weights: {reply: 0.5, handling: 0.3, satisfaction: 0}\n  min_tickets: 8\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'zone.db'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_without_the_section_the_defaults_hold(engine: Engine, tmp_path: Path) -> None:
    assert parse_zone(MINIMAL).ranking == RankingSection(RankingWeights(0.4, 0.4, 0.2), 5)
    with transaction(engine) as session:
        assert read_zone(session).ranking == RankingSection()
    path = tmp_path / "zone.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    load_and_apply(engine, path)
    with transaction(engine) as session:
        assert read_zone(session).ranking == RankingSection()


def test_weights_and_minimum_are_read_applied_and_reapplied(engine: Engine, tmp_path: Path) -> None:
    text = MINIMAL + RANKING
    assert parse_zone(text).ranking == RankingSection(RankingWeights(0.5, 0.3, 0.0), 8)
    assert schema_errors(text) == []
    path = tmp_path / "zone.yaml"
    path.write_text(text, encoding="utf-8")
    load_and_apply(engine, path)
    with transaction(engine) as session:
        assert read_zone(session).ranking == RankingSection(RankingWeights(0.5, 0.3, 0.0), 8)
    assert load_and_apply(engine, path).changed is False
    partial = MINIMAL + "ranking:\n  weights: {handling: 1}\n"
    path.write_text(partial, encoding="utf-8")
    load_and_apply(engine, path)
    with transaction(engine) as session:
        assert read_zone(session).ranking == RankingSection(RankingWeights(0.4, 1.0, 0.2), 5)


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ("ranking:\n  weights: {reply: -1}\n", "ranking.weights.reply", "zero or more"),
        ("ranking:\n  weights: {reply: lots}\n", "ranking.weights.reply", "zero or more"),
        (
            "ranking:\n  weights: {reply: 0, handling: 0, satisfaction: 0}\n",
            "ranking.weights",
            "at least one weight",
        ),
        ("ranking:\n  weights: {speed: 1}\n", "ranking.weights.speed", "unknown field"),
        ("ranking:\n  min_tickets: -2\n", "ranking.min_tickets", "0 or more"),
        ("ranking:\n  min_tickets: five\n", "ranking.min_tickets", "whole number"),
        ("ranking:\n  minimum: 5\n", "ranking.minimum", "unknown field"),
    ],
)
def test_mistakes_are_refused_with_line_and_field(section: str, field: str, message: str) -> None:
    text = MINIMAL + section
    line = MINIMAL.count("\n") + 2
    with pytest.raises(ZoneFileError) as caught:
        parse_zone(text, "zone.yaml")
    assert f"zone.yaml:{line}: {field}" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "section",
    [
        "ranking:\n  weights: {reply: -1}\n",
        "ranking:\n  weights: {speed: 1}\n",
        "ranking:\n  min_tickets: -2\n",
        "ranking:\n  minimum: 5\n",
    ],
)
def test_the_schema_flags_them_too(section: str) -> None:
    assert schema_errors(MINIMAL + section) != []
