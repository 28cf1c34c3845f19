"""The domain's refusals: what a user asked for and may not have, as a catalog key and its
parameters, so the chat can say why in the reader's language."""

from __future__ import annotations

from typing import Any


class DeskError(Exception):
    """A refusal the user should read: a catalog key and its parameters."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params
