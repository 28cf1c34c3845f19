"""What every command shares: the handler type and the engine."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sqlalchemy.engine import Engine

from bot.settings import Settings
from models.db import make_engine

Handler = Callable[[Settings, argparse.Namespace], int]


def engine_for(settings: Settings) -> Engine:
    return make_engine(settings.database_url)
