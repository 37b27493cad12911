"""Where samples come from: files (CSV/JSONL), the host, and (in perf_alerts.crew) CrewAI events."""
