"""A throwaway Prometheus server for tests: the machine's `prometheus` and `promtool` binaries
(Debian's `prometheus` package; `.ci/run` installs it), never the system service.

    from prom_server import PromServer, PromUnavailable, backfill
    backfill(openmetrics_text, data_dir)                  # promtool tsdb create-blocks-from openmetrics
    with PromServer(tmp_dir, scrape_configs=[...], data_dir=data_dir) as prom:
        prom.url                                          # http://127.0.0.1:PORT
        prom.query("up")                                  # the API's `data`

Without the binaries the tests skip locally and fail with CI=true (`require_prometheus()`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


class PromUnavailable(RuntimeError):
    pass


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def binaries() -> tuple[str, str]:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not tool:
        raise PromUnavailable("the prometheus and promtool binaries are not on PATH "
                              "(apt-get install prometheus; .ci/run does)")
    return prom, tool


def require_prometheus() -> tuple[str, str]:
    """The binaries, or a skip (locally) / a failure (CI=true), like the PostgreSQL tests."""
    try:
        return binaries()
    except PromUnavailable as e:
        if ci():
            pytest.fail(f"Prometheus is required with CI=true: {e}", pytrace=False)
        pytest.skip(f"Prometheus not available: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backfill(openmetrics: str, data_dir: Path, work_dir: Path) -> None:
    """Write TSDB blocks from OpenMetrics text (it must end with `# EOF`) into `data_dir`."""
    _, tool = binaries()
    src = work_dir / "backfill.om"
    src.write_text(openmetrics, encoding="utf-8")
    data_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([tool, "tsdb", "create-blocks-from", "openmetrics", str(src), str(data_dir)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"promtool failed ({r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}")


class PromServer:
    """`prometheus` on a free 127.0.0.1 port with its own config and TSDB directory."""

    def __init__(self, work_dir: Path, *, scrape_configs: list[dict[str, Any]] | None = None,
                 data_dir: Path | None = None, scrape_interval: str = "1s") -> None:
        self.prom, _ = binaries()
        self.work_dir = work_dir
        self.data_dir = data_dir or (work_dir / "tsdb")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = work_dir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": scrape_configs or [],
        }), encoding="utf-8")
        self.log = work_dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PromServer":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [self.prom, f"--config.file={self.config}", f"--storage.tsdb.path={self.data_dir}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=30d",
                 "--web.enable-lifecycle"], stdout=out, stderr=subprocess.STDOUT, cwd=self.work_dir)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"prometheus did not start: {self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = json.loads(r.text)
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, promql: str) -> Any:
        return self.api("query", query=promql)

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Until the instant query has a result (a scrape has happened); its result."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.query(promql)["result"]
            if res:
                return list(res)
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for {promql!r} within {timeout}s; targets: "
                                     f"{self.api('targets')}")
            time.sleep(0.2)
