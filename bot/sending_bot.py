"""PTB's bot, with the two calls the outbox makes for nearly every message it sends, in a
form that returns only what the outbox keeps of Telegram's answer.

`Bot.send_message` and `Bot.edit_message_text` build a whole `Message` from the answer
(its sender, its chat, its text, every button of its keyboard): about a tenth of a
millisecond a message, for a message id the outbox writes down and nothing else. These
calls go through PTB's own posting (its defaults, its request, its errors: `RetryAfter`,
`BadRequest` and the rest are raised exactly as from the stock methods), and read the
message id from the answer as it came. They take the keyboard as the JSON the outbox
writes it in and the message replied to by its id: PTB's keyboard objects, built for one
call and serialised again, cost more than the rest of the call's preparation (well over
half a millisecond for a dozen buttons). Everything else is PTB's `ExtBot`, unchanged."""

from __future__ import annotations

from typing import Any

from telegram.error import TelegramError
from telegram.ext import ExtBot


class SendingBot(ExtBot[None]):
    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        keyboard: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """sendMessage, with an inline keyboard as its `reply_markup` JSON, in reply to
        message `reply_to` if it is still there (sent anyway if not); the new message's id."""
        reply = (
            None
            if reply_to is None
            else {"message_id": reply_to, "allow_sending_without_reply": True}
        )
        answer = await self._post(
            "sendMessage",
            {"chat_id": chat_id, "text": text, "reply_markup": keyboard, "reply_parameters": reply},
        )
        return _message_id(answer, "sendMessage")

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        keyboard: str | None = None,
    ) -> None:
        """editMessageText of a message the bot sent (Telegram answers with the message,
        which nobody reads)."""
        await self._post(
            "editMessageText",
            {
                "chat_id": chat_id,
                "message_id": message_id,
                "text": text,
                "reply_markup": keyboard,
            },
        )


def _message_id(answer: Any, method: str) -> int:
    """The message id of an answer that should be a message; a server that answers with
    something else is a fault of the server's, raised as PTB raises such faults."""
    message_id = answer.get("message_id") if isinstance(answer, dict) else None
    if type(message_id) is not int:
        raise TelegramError(f"{method} answered without a message id")
    return message_id
