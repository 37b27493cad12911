"""Management: schedules, policies and actions, executive summaries."""
