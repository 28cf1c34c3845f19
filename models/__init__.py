"""The domain: tables, the ticket state machine, routing, deadlines, audit. No chat platform."""

from models import org, plumbing, ticket  # noqa: F401  (register every table on the metadata)
