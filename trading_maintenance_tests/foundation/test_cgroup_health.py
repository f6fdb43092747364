"""Health inside a container: memory and CPU against the cgroup's limits (v2 and v1), not the host's."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from trading_maintenance.core.health.cgroup import CgroupReading, read_cgroup
from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.resources import SystemProbeResource
from trading_maintenance.resources.system import cgroup_cpu_percent
from trading_maintenance_tests.conftest import run_asset_job

MB = 1024 * 1024
V1_NO_LIMIT = "9223372036854771712"


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text + "\n")


def cgroup_v2(tmp_path: Path, memory_max: str, memory_current: int, cpu_max: str = "max 100000") -> tuple[Path, Path]:
    """A unified hierarchy as a Kubernetes node mounts it, this process in a container's group."""
    root = tmp_path / "v2"
    _write(root, {"cgroup.controllers": "cpuset cpu io memory pids", "memory.max": "max", "cpu.max": "max 100000"})
    group = root / "kubepods.slice" / "pod-1" / "container-1"
    _write(root / "kubepods.slice", {"memory.max": "max", "cpu.max": "max 100000"})
    _write(root / "kubepods.slice" / "pod-1", {"memory.max": "max", "cpu.max": "max 100000"})
    _write(group, {"memory.max": memory_max, "memory.current": str(memory_current), "cpu.max": cpu_max,
                   "memory.stat": "anon 1000\nfile 4096\ninactive_file 0\nactive_file 4096",
                   "cpu.stat": "usage_usec 5000000\nuser_usec 4000000\nsystem_usec 1000000"})
    proc = tmp_path / "proc_self_cgroup_v2"
    proc.write_text("0::/kubepods.slice/pod-1/container-1\n")
    return root, proc


def cgroup_v1(tmp_path: Path) -> tuple[Path, Path]:
    """Legacy hierarchies: the memory limit is set on the pod's group, the container's own is unlimited."""
    root = tmp_path / "v1"
    pod = root / "memory" / "kubepods" / "pod-1"
    _write(root / "memory", {"memory.limit_in_bytes": V1_NO_LIMIT, "memory.usage_in_bytes": str(900 * MB)})
    _write(root / "memory" / "kubepods", {"memory.limit_in_bytes": V1_NO_LIMIT})
    _write(pod, {"memory.limit_in_bytes": str(400 * MB)})
    _write(pod / "container-1", {"memory.limit_in_bytes": V1_NO_LIMIT, "memory.usage_in_bytes": str(380 * MB),
                                 "memory.stat": f"cache {60 * MB}\ntotal_inactive_file {40 * MB}\ntotal_rss {300 * MB}"})
    cpu = root / "cpu,cpuacct" / "kubepods" / "pod-1" / "container-1"
    _write(root / "cpu,cpuacct", {"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000", "cpuacct.usage": "1"})
    _write(cpu, {"cpu.cfs_quota_us": "150000", "cpu.cfs_period_us": "100000", "cpuacct.usage": "2500000000"})
    proc = tmp_path / "proc_self_cgroup_v1"
    proc.write_text("12:memory:/kubepods/pod-1/container-1\n4:cpu,cpuacct:/kubepods/pod-1/container-1\n0::/\n")
    return root, proc


def test_cgroup_v2_memory_and_cpu_quota_replace_the_host_figures(tmp_path):
    root, proc = cgroup_v2(tmp_path, str(300 * MB), int(294 * MB), cpu_max="50000 100000")
    reading = read_cgroup(root, proc)
    assert (reading.version, reading.memory_limit_bytes, reading.cpu_limit_cores) == ("v2", 300 * MB, 0.5)
    sample = SystemProbeResource(data_dir=str(tmp_path), cpu_sample_seconds=0.05, cgroup_root=str(root), proc_cgroup=str(proc)).sample()
    assert sample.memory_percent == 98.0 and sample.memory_available_bytes == 6 * MB
    assert sample.memory_source.startswith("cgroup v2") and "container-1" in sample.memory_source
    assert sample.cpu_source == "cgroup v2: quota 0.5 cores" and sample.cpu_count == 1
    assert sample.cpu_percent == 0.0  # the group used no CPU between the two readings of the prepared files


def test_cgroup_v1_limit_on_an_ancestor_and_inactive_cache_not_counted(tmp_path):
    root, proc = cgroup_v1(tmp_path)
    reading = read_cgroup(root, proc)
    assert reading.version == "v1" and reading.memory_limit_bytes == 400 * MB
    assert reading.memory_used_bytes == 340 * MB and reading.memory_percent == 85.0
    assert reading.cpu_limit_cores == 1.5 and reading.cpu_usage_seconds == 2.5
    sample = SystemProbeResource(data_dir=str(tmp_path), cpu_sample_seconds=0.05, cgroup_root=str(root), proc_cgroup=str(proc)).sample()
    assert sample.memory_percent == 85.0 and sample.memory_source.startswith("cgroup v1") and sample.cpu_count == 2


def test_no_limit_or_no_cgroup_falls_back_to_the_host_and_says_so(tmp_path):
    root, proc = cgroup_v2(tmp_path, "max", int(294 * MB))
    sample = SystemProbeResource(data_dir=str(tmp_path), cpu_sample_seconds=0.05, cgroup_root=str(root), proc_cgroup=str(proc)).sample()
    assert sample.memory_source == "host (cgroup v2 sets no memory limit)" and sample.cpu_source == "host (cgroup v2 sets no CPU quota)"
    assert sample.memory_limit_bytes is None
    assert read_cgroup(tmp_path / "nothing-mounted", proc) is None


def test_cgroup_cpu_percent_is_usage_over_the_quota():
    before = CgroupReading("v2", "/g", 1, 2, 0.5, 10.0)
    after = CgroupReading("v2", "/g", 1, 2, 0.5, 10.4)
    assert cgroup_cpu_percent(before, after, 1.0) == pytest.approx(80.0)  # 0.4 s of CPU in 1 s on half a core
    assert cgroup_cpu_percent(before, CgroupReading("v2", "/g", 1, 2, None, 10.4), 1.0) is None  # no quota: the host's figure


def test_health_check_in_a_full_memory_cgroup_reports_the_cgroups_use(tmp_path, make_resources):
    root, proc = cgroup_v2(tmp_path, str(300 * MB), int(294 * MB))
    probe = SystemProbeResource(data_dir=str(tmp_path), cpu_sample_seconds=0.05, cgroup_root=str(root), proc_cgroup=str(proc))
    with dg.instance_for_test() as instance:
        result = run_asset_job(system_health_check_job, [check_system_health], resources=make_resources(system_probe=probe), instance=instance)
        metadata = instance.fetch_materializations(dg.AssetKey("system_health"), limit=1).records[0].asset_materialization.metadata
    output = result.output_for_node("check_system_health")
    memory = {c["name"]: c for c in output["components"]}["memory"]
    assert memory["value"] == 98.0 and "memory 98.0%" in memory["reason"]
    assert metadata["memory_percent"].value == 98.0 and metadata["memory_source"].value.startswith("cgroup v2")


_ALLOCATE = """
import os, sys, time
with open(sys.argv[1] + "/cgroup.procs", "w") as procs:
    procs.write(str(os.getpid()))
block = bytearray(int(sys.argv[2]))
for i in range(0, len(block), 4096):
    block[i] = 1
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_real_memory_limited_cgroup_when_the_machine_allows_one(tmp_path):
    mount = Path("/sys/fs/cgroup")
    v2 = (mount / "cgroup.controllers").is_file()
    parent = mount if v2 else mount / "memory"
    group = parent / f"tm-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(300 * MB))
    except OSError:
        if group.is_dir():
            group.rmdir()
        pytest.skip("this machine does not let the tests create a memory cgroup")
    child = subprocess.Popen([sys.executable, "-c", _ALLOCATE, str(group), str(260 * MB)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sample = SystemProbeResource(data_dir=str(tmp_path), cpu_sample_seconds=0.05,
                                     proc_cgroup=f"/proc/{child.pid}/cgroup").sample()
        assert sample.memory_source.startswith(f"cgroup {'v2' if v2 else 'v1'} {group}")
        assert sample.memory_limit_bytes == 300 * MB and sample.memory_percent > 80.0
    finally:
        child.kill()
        child.wait()
        os.rmdir(group)
