"""Everything that enters the process. Updates are fetched with our own getUpdates loop and
committed to the inbox table (unique update_id) BEFORE the next call confirms them to
Telegram, unlike PTB's stock Updater, which confirms as soon as updates are in memory. Then
each stored update is handled in one transaction together with marking it processed, so a
crash anywhere loses nothing and a redelivered update changes nothing."""

from bot.inbox.fetching import ALLOWED_UPDATES, Inbox
from bot.inbox.runner import UpdateRunner
from bot.inbox.storage import (
    MAX_ATTEMPTS,
    clean_text,
    dead_letters,
    report_dead_letters,
    retry_dead_letter,
    store_updates,
)

__all__ = [
    "ALLOWED_UPDATES",
    "MAX_ATTEMPTS",
    "Inbox",
    "UpdateRunner",
    "clean_text",
    "dead_letters",
    "report_dead_letters",
    "retry_dead_letter",
    "store_updates",
]
