"""The machine the platform runs on, read through psutil."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import psutil
from pydantic import Field


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

    def as_dict(self) -> dict:
        return asdict(self)


class SystemProbeResource(dg.ConfigurableResource):
    """CPU, memory, swap, load and the disk holding the data root."""

    data_dir: str = Field(default="data", description="its filesystem is the one whose usage is measured")
    cpu_sample_seconds: float = Field(default=1.0, description="CPU is averaged over this interval, not one instant")

    def sample(self) -> SystemSample:
        path = Path(self.data_dir)
        while not path.exists() and path != path.parent:
            path = path.parent
        cpu = psutil.cpu_percent(interval=self.cpu_sample_seconds)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(str(path))
        load_1, load_5, load_15 = os.getloadavg()
        return SystemSample(
            cpu_percent=float(cpu),
            cpu_sample_seconds=self.cpu_sample_seconds,
            cpu_count=psutil.cpu_count() or 1,
            memory_percent=float(memory.percent),
            memory_available_bytes=int(memory.available),
            swap_percent=float(swap.percent) if swap.total else 0.0,
            disk_path=str(path),
            disk_percent=float(disk.percent),
            disk_free_bytes=int(disk.free),
            load_1=load_1,
            load_5=load_5,
            load_15=load_15,
            sampled_at=time.time(),
        )
