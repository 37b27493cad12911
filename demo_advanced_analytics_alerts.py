#!/usr/bin/env python3
"""perf-alerts demo: a simulated day of a three-agent crew with an incident, through the real pipeline.

    python demo_advanced_analytics_alerts.py [--fast] [--out demo-output]

The same as `perf-alerts demo`. Set DISCORD_WEBHOOK_URL (or DISCORD_WEBHOOK_CRITICAL /
_OPS / _LEADERSHIP) to see the notifications in your own Discord channels; without them
they are shown on the console as they would look in Discord.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from perf_alerts.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "demo", *sys.argv[1:]]
    main()
