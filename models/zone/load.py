"""Loading a zone file into the database: parse and check it whole, then apply it.

Kept apart from `models.zone.parse` and `models.zone.apply` so that neither knows the other:
both know only `models.zone.schema`, and this module alone opens the transaction.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from models.db import transaction
from models.zone.apply import ApplyReport, apply_zone
from models.zone.parse import load_zone_file

__all__ = ["load_and_apply"]


def load_and_apply(engine: Engine, path: str | Path) -> ApplyReport:
    """Validate first, then write in one transaction: a bad file changes nothing."""
    document = load_zone_file(path)
    with transaction(engine) as session:
        return apply_zone(session, document)
