"""Durations as admins write them in the zone's config ("10m", "2h", "1d", "1h30m").

Deadlines are configured by people, not programmers, so the parser is strict: a typo
must fail loudly at load time and name the text at fault, rather than silently become
a zero or a huge deadline.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS: dict[str, int] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_UNIT_ORDER = "dhms"
_TOKEN = re.compile(r"([0-9]+)\s*([dhms])")


def parse_duration(text: str) -> timedelta:
    """Turn "90s", "10m", "2h", "1d", "1h30m", "1d 2h" or a bare "600" (seconds) into time.

    Units must come largest first and each at most once, so "30m1h" or "1h1h" (almost
    certainly typos) are refused instead of being guessed at.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected text such as '2h' or '1h30m'")
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError(f"invalid duration {text!r}: empty")
    if cleaned.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    # isascii(): str.isdigit() also accepts digits like "²" that int() refuses.
    bare_seconds = cleaned.isascii() and cleaned.isdigit()
    seconds = int(cleaned) if bare_seconds else _parse_units(cleaned, text)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None


def _parse_units(cleaned: str, original: str) -> int:
    seconds = 0
    position = 0
    last_rank = -1
    for match in _TOKEN.finditer(cleaned):
        gap = cleaned[position : match.start()]
        if gap.strip():
            raise ValueError(f"invalid duration {original!r}: unexpected {gap.strip()!r}")
        unit = match.group(2)
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {original!r}: units must appear once, largest first"
            )
        last_rank = rank
        seconds += int(match.group(1)) * _UNIT_SECONDS[unit]
        position = match.end()
    if last_rank < 0 or cleaned[position:].strip():
        raise ValueError(
            f"invalid duration {original!r}: expected e.g. '90s', '10m', '2h', '1d', '1h30m'"
        )
    return seconds


def format_duration(duration: timedelta) -> str:
    """Write a duration the way `parse_duration` reads it, so config can round-trip.

    Sub-second parts are dropped: no deadline in this domain is that precise.
    """
    total = int(duration.total_seconds())
    if total < 0:
        raise ValueError(f"cannot format negative duration {duration!r}")
    if total == 0:
        return "0s"
    parts: list[str] = []
    for unit in _UNIT_ORDER:
        count, total = divmod(total, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
