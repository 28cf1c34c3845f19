"""The outbox: everything squadbot says leaves through here. The dispatcher sends what the
domain queued, in order per chat, paced to Telegram's limits; rendering turns a row into
text and buttons; bookkeeping records what was sent or failed; robots post alerts to WeCom,
DingTalk, Feishu and signed JSON webhooks."""

from bot.outbox.dispatcher import Delivery
from bot.outbox.pacing import Limits

__all__ = ["Delivery", "Limits"]
