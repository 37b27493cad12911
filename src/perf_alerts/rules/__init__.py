"""Rules: evaluation of the five rule types, templates, promtool-style unit tests, backtests."""
