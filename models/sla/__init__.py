"""Pure time: durations as admins write them, business calendars and the deadline policy.

Nothing here touches the database, a chat or a timer, and nothing here imports the rest of
`models`: the domain and the scheduler call into this package, never the other way round.
"""
