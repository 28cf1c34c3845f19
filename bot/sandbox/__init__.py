"""The sandbox: a local Telegram Bot API emulator on 127.0.0.1 and the scripted demo that
`make run` plays against it when no token is configured (`bot.sandbox.script`, imported on
its own: it needs the whole application, the emulator does not).

Production code does not import this package; only the CLI's sandbox command does, lazily.
"""

from bot.sandbox.emulator import BotApiEmulator
from bot.sandbox.records import TINY_PNG, RateLimit
from bot.sandbox.text import utf16_len
from bot.sandbox.thread import EmulatorThread

__all__ = ["TINY_PNG", "BotApiEmulator", "EmulatorThread", "RateLimit", "utf16_len"]
