"""What one Bot API call costs the bot's process: the same calls to the same emulator through
python-telegram-bot's stock `HTTPXRequest` (the baseline, as `ApplicationBuilder` builds
it) and through squadbot's transport (bot/bot_api_transport.py, as `build_application`
builds it), one after the other in one run. Figures: CPU of the calling thread per call
(the emulator runs in a thread of its own, so its work is not counted) and wall time per
call, for a short answer with a button (sendMessage), a press's answer
(answerCallbackQuery) and a 50 kB upload (sendDocument)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest
from telegram.request import BaseRequest, HTTPXRequest

from bench.common import machine_note, print_table, ratio
from bot.bot_api_transport import BotApiTransport
from bot.sandbox import EmulatorThread

TOKEN = "5151515151:BENCH-transport-token"
PERSON = 9001
CALLS = {"full": 3000, "quick": 600}
UPLOAD = bytes(range(256)) * 200  # 51.2 kB


def systems() -> dict[str, Callable[[], BaseRequest]]:
    return {
        "PTB HTTPXRequest": lambda: HTTPXRequest(connection_pool_size=256),
        "squadbot transport": lambda: BotApiTransport(16),
    }


async def per_call(calls: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """CPU µs (this thread) and wall µs per call, after a warm-up."""
    for i in range(max(20, calls // 20)):
        await call(i)
    cpu, wall = time.thread_time(), time.perf_counter()
    for i in range(calls):
        await call(i)
    return (
        (time.thread_time() - cpu) * 1e6 / calls,
        (time.perf_counter() - wall) * 1e6 / calls,
    )


async def measure(url: str, make: Callable[[], BaseRequest], calls: int) -> dict[str, Any]:
    request = make()
    bot = Bot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot", request=request)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("认领 Claim", callback_data="t:1")]])
    figures: dict[str, Any] = {}
    async with bot:

        async def send(i: int) -> Any:
            return await bot.send_message(
                PERSON, f"工单 HX-2611-{i:04d} 已受理", reply_markup=markup
            )

        async def answer(i: int) -> Any:
            try:  # no such query: the emulator answers 400, a full round all the same
                return await bot.answer_callback_query(str(10**6 + i), "已认领")
            except BadRequest:
                return None

        async def upload(i: int) -> Any:
            return await bot.send_document(PERSON, UPLOAD, filename=f"台账-{i}.xlsx")

        figures["sendMessage"] = await per_call(calls, send)
        figures["answerCallbackQuery"] = await per_call(calls, answer)
        figures["sendDocument 50 kB"] = await per_call(max(50, calls // 10), upload)
    return figures


async def run(quick: bool) -> dict[str, dict[str, Any]]:
    calls = CALLS["quick" if quick else "full"]
    with EmulatorThread(token=TOKEN) as thread:
        thread.call(lambda: thread.emu.add_user(PERSON, "Bench"))
        return {name: await measure(thread.url, make, calls) for name, make in systems().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls of each kind")
    args = parser.parse_args(argv)
    print("transport: the bot's CPU for one Bot API call, stock PTB (httpx) vs squadbot")
    print(f"machine: {machine_note()}")
    results = asyncio.run(run(args.quick))
    stock, ours = results["PTB HTTPXRequest"], results["squadbot transport"]
    rows = []
    for call in stock:
        (stock_cpu, stock_wall), (our_cpu, our_wall) = stock[call], ours[call]
        rows.append([f"{call}: CPU µs per call", stock_cpu, our_cpu, ratio(our_cpu, stock_cpu)])
        rows.append(
            [f"{call}: wall µs per call", stock_wall, our_wall, ratio(our_wall, stock_wall)]
        )
    print_table(
        f"Bot API calls to the emulator on 127.0.0.1, {CALLS['quick' if args.quick else 'full']}"
        " of each (uploads a tenth)",
        ["", "PTB HTTPXRequest", "squadbot transport", "squadbot/PTB"],
        rows,
    )


if __name__ == "__main__":
    main()
