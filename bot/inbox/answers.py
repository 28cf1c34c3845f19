"""Button presses answered. Telegram turns a spinner on the pressed button until
answerCallbackQuery arrives, and takes that answer only for about 15 seconds after the press.
One attempt is not enough: a 5xx, a 429 or a timeout on that one call left the spinner
turning (about 1 press in 28 while the Bot API was failing). So an answer that did not
arrive is tried again, with a short backoff, until it arrives, Telegram says the query is
gone (too old, or already answered: an earlier attempt did arrive), or the window closes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from handlers.work import CallbackAnswer

log = logging.getLogger(__name__)

# Seconds after handling in which a lost answer is tried again: Telegram keeps a query for
# about 15 s from the press, and the press has already waited in the inbox a little.
ANSWER_WINDOW = 12.0
FIRST_RETRY = 0.2
LONGEST_RETRY = 2.0


class ButtonAnswers:
    """Answers presses beside the inbox (the next update need not wait for the round trip),
    each tried until it arrives or its window closes."""

    def __init__(
        self,
        bot: Bot,
        *,
        window: float = ANSWER_WINDOW,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.bot = bot
        self.window = window
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()
        # queries answered lately: Telegram takes one answer per press, and a press answered
        # while the store was away is handled (and would be answered) when it is back
        self._answered: dict[str, None] = {}

    def send(self, answers: Iterable[CallbackAnswer]) -> None:
        """Answer these presses in order, in a task of their own."""
        batch = [answer for answer in answers if answer.query_id not in self._answered]
        if not batch:
            return
        deadline = time.monotonic() + self.window
        task = asyncio.create_task(self._answer_all(batch, deadline))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace: float = 1.0) -> None:
        """At stop: the answers under way get `grace` seconds, then are given up."""
        pending = list(self._tasks)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _answer_all(self, batch: list[CallbackAnswer], deadline: float) -> None:
        for answer in batch:
            await self.answer(answer, deadline)

    async def answer(self, answer: CallbackAnswer, deadline: float) -> bool:
        """False when it was given up on: the window closed, or the first attempt already
        found the query gone."""
        delay = FIRST_RETRY
        tries = 0
        problem: Exception
        while True:
            tries += 1
            try:
                await self.bot.answer_callback_query(
                    answer.query_id, text=answer.text, show_alert=answer.alert
                )
            except RetryAfter as exc:
                wait, problem = seconds_of(exc.retry_after), exc
            except (BadRequest, Forbidden) as exc:
                # the query is gone: too old, or answered by an attempt whose reply was lost
                if tries == 1:
                    log.warning("press %s could not be answered: %s", answer.query_id, exc)
                return tries > 1
            except NetworkError as exc:  # 5xx, a timeout, a connection that broke
                wait, problem = delay, exc
                delay = min(delay * 2, LONGEST_RETRY)
            else:
                self._answered[answer.query_id] = None
                if len(self._answered) > 1000:  # the oldest are long past their 15 s
                    del self._answered[next(iter(self._answered))]
                return True
            if time.monotonic() + wait > deadline:
                log.warning(
                    "press %s left unanswered after %d attempts: %s",
                    answer.query_id,
                    tries,
                    problem,
                )
                return False
            await self._sleep(wait)


def seconds_of(retry_after: int | float | timedelta) -> float:
    if isinstance(retry_after, timedelta):
        return retry_after.total_seconds()
    return float(retry_after)
