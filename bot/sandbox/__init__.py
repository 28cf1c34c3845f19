"""The sandbox: a local Telegram Bot API emulator on 127.0.0.1 and the scripted demo that
`make run` plays against it when no token is configured."""
