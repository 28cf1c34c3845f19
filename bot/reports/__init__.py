"""Output formats for the managers' figures: PNG charts (charts, fonts), the .xlsx ledger
(ledger), a month's whole report written to files (export), and `squadbot report`
(command). Domain values in, files out: nothing here talks to Telegram."""
