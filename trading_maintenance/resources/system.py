"""The machine the platform runs on, read through psutil, and the limits of its container (cgroup)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import psutil
from pydantic import Field

from trading_maintenance.core.health.cgroup import CgroupReading, read_cgroup


@dataclass(frozen=True)
class SystemSample:
    cpu_percent: float
    cpu_sample_seconds: float
    cpu_count: int
    memory_percent: float
    memory_available_bytes: int
    swap_percent: float
    disk_path: str
    disk_percent: float
    disk_free_bytes: int
    load_1: float
    load_5: float
    load_15: float
    sampled_at: float
    memory_source: str = "host"  # which figures memory_percent is: the container's limit or the host
    cpu_source: str = "host"
    memory_limit_bytes: int | None = None
    cpu_limit_cores: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cgroup_cpu_percent(before: CgroupReading | None, after: CgroupReading | None, elapsed: float) -> float | None:
    """CPU used by the group over the interval, as a percent of its quota (None without a quota)."""
    if before is None or after is None or not after.cpu_limit_cores or elapsed <= 0:
        return None
    if before.cpu_usage_seconds is None or after.cpu_usage_seconds is None:
        return None
    used = max(0.0, after.cpu_usage_seconds - before.cpu_usage_seconds)
    return min(100.0, 100.0 * used / (elapsed * after.cpu_limit_cores))


class SystemProbeResource(dg.ConfigurableResource):
    """CPU, memory, swap, load and the disk holding the data root."""

    data_dir: str = Field(default="data", description="its filesystem is the one whose usage is measured")
    cpu_sample_seconds: float = Field(default=1.0, description="CPU is averaged over this interval, not one instant")
    cgroup_root: str = Field(default="/sys/fs/cgroup", description="cgroup filesystem (v2 or v1) whose limits apply")
    proc_cgroup: str = Field(default="/proc/self/cgroup", description="names this process's group under cgroup_root")

    def sample(self) -> SystemSample:
        """Memory and CPU against the container's cgroup limits when it has them, the host's otherwise."""
        path = Path(self.data_dir)
        while not path.exists() and path != path.parent:
            path = path.parent
        before, started = read_cgroup(self.cgroup_root, self.proc_cgroup), time.monotonic()
        cpu = float(psutil.cpu_percent(interval=self.cpu_sample_seconds))
        cgroup = read_cgroup(self.cgroup_root, self.proc_cgroup)
        memory = psutil.virtual_memory()
        memory_percent, memory_available, memory_source = float(memory.percent), int(memory.available), "host"
        cpu_count, cpu_source = psutil.cpu_count() or 1, "host"
        if cgroup is not None and cgroup.memory_percent is not None:
            memory_percent = cgroup.memory_percent
            memory_available = max(0, cgroup.memory_limit_bytes - cgroup.memory_used_bytes)
            memory_source = f"cgroup {cgroup.version} {cgroup.memory_group}: limit {cgroup.memory_limit_bytes} bytes"
        elif cgroup is not None:
            memory_source = f"host (cgroup {cgroup.version} sets no memory limit)"
        group_cpu = cgroup_cpu_percent(before, cgroup, time.monotonic() - started)
        if group_cpu is not None:
            cpu, cpu_count = group_cpu, max(1, math.ceil(cgroup.cpu_limit_cores))
            cpu_source = f"cgroup {cgroup.version}: quota {cgroup.cpu_limit_cores:g} cores"
        elif cgroup is not None:
            cpu_source = f"host (cgroup {cgroup.version} sets no CPU quota)"
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(str(path))
        load_1, load_5, load_15 = os.getloadavg()
        return SystemSample(
            cpu_percent=round(cpu, 2),
            cpu_sample_seconds=self.cpu_sample_seconds,
            cpu_count=cpu_count,
            memory_percent=round(memory_percent, 2),
            memory_available_bytes=memory_available,
            swap_percent=float(swap.percent) if swap.total else 0.0,
            disk_path=str(path),
            disk_percent=float(disk.percent),
            disk_free_bytes=int(disk.free),
            load_1=load_1,
            load_5=load_5,
            load_15=load_15,
            sampled_at=time.time(),
            memory_source=memory_source,
            cpu_source=cpu_source,
            memory_limit_bytes=cgroup.memory_limit_bytes if cgroup is not None else None,
            cpu_limit_cores=cgroup.cpu_limit_cores if cgroup is not None else None,
        )
