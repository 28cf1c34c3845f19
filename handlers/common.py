"""Small pieces every conversation uses: parsing command arguments and naming tickets."""

from __future__ import annotations

from telegram import Message, Update


def command_args(message: Message) -> tuple[str, str]:
    """('/reply YZ-2611-0042 text...') -> ('YZ-2611-0042', 'text...')."""
    text = message.text or message.caption or ""
    parts = text.split(maxsplit=2)
    first = parts[1] if len(parts) > 1 else ""
    rest = parts[2] if len(parts) > 2 else ""
    return first, rest


def display_name(update: Update) -> str:
    user = update.effective_user
    if user is None:
        return "?"
    return user.full_name or user.username or str(user.id)
