"""`perf-alerts dashboard` in a subprocess on a free loopback port, for benches that time its HTTP API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

EXE = Path(sys.executable).with_name("perf-alerts")


def start_dashboard(db: Path, cwd: str | Path) -> tuple["subprocess.Popen[str]", str]:
    """The server process (without PERF_ALERTS_TOKEN: loopback needs none) and its base URL, read
    from its start-up line; the caller terminates it. SystemExit if it did not start within 60 s."""
    env = {k: v for k, v in os.environ.items() if k != "PERF_ALERTS_TOKEN"}
    proc = subprocess.Popen([str(EXE), "--db", str(db), "dashboard", "--port", "0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        proc.wait()
        raise SystemExit("the dashboard did not start")
    return proc, url
