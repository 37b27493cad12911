"""An event loop running in a background thread.

The notification engine (`perf_alerts.notify.engine`) owns one: sync callers hand it
coroutines and wait on a future, so `asyncio.run` is never called inside a running loop
and long-lived async state (HTTP connections, Discord rate-limit buckets) survives
between calls.
"""

from __future__ import annotations

import asyncio
import threading


class LoopThread:
    def __init__(self, name: str = "perf-alerts-io") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()
