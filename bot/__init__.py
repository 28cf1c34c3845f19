"""The application: settings, the PTB Application, the inbox, the outbox, the CLI."""

import os

# python-telegram-bot 22 reports RetryAfter.retry_after as a timedelta with this opt-in, which
# is what the outbox expects (it accepts seconds too); without it every 429 logs a warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")
