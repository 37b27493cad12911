"""Host metrics (CPU, memory, disk) of the machine the crew runs on, via psutil."""

from __future__ import annotations

from perf_alerts.model import Sample
from perf_alerts.timeutil import Clock, SystemClock


def collect_host(clock: Clock | None = None, disk_path: str = "/", host: str | None = None,
                 cpu_interval: float | None = None) -> list[Sample]:
    """One reading of host_cpu_percent, host_memory_percent and host_disk_percent.

    psutil measures CPU between two calls: a long-running caller (the daemon) passes None
    and gets the usage since its last call; a one-shot caller passes a short interval,
    since a first call with None always reads 0.0.
    """
    import socket

    import psutil  # imported here: only the daemon and `collect` need it

    clock = clock or SystemClock()
    now = clock.now()
    labels = {"host": host or socket.gethostname()}
    cpu = float(psutil.cpu_percent(interval=cpu_interval))
    mem = float(psutil.virtual_memory().percent)
    disk = float(psutil.disk_usage(disk_path).percent)
    return [
        Sample("host_cpu_percent", labels, now, cpu),
        Sample("host_memory_percent", labels, now, mem),
        Sample("host_disk_percent", {**labels, "mount": disk_path}, now, disk),
    ]
