"""The memory and CPU limits of the control group a process runs in (cgroup v2 and v1).

In a container (Kubernetes runs every task in one) the host's figures say nothing about the limits
that matter: a pod at 98 % of its 300 MB limit is about to be OOM-killed while the host shows 10 %
used. Everything is read below `root` (normally /sys/fs/cgroup) from the group named in
`proc_cgroup` (normally /proc/self/cgroup), so prepared folders can stand in for both.

Memory use is the working set as the kubelet counts it: usage minus inactive file cache, which the
kernel reclaims before it kills anything. A limit set on an ancestor group binds too: the tightest
limit from the process's group up to the root is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

# v1 reports "no limit" as a page-rounded LONG_MAX; anything this large is no limit.
V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class CgroupReading:
    version: str  # "v2" or "v1"
    memory_group: str  # folder the usage was read from
    memory_used_bytes: int | None
    memory_limit_bytes: int | None  # None: no limit up to the root
    cpu_limit_cores: float | None  # quota / period; None: no quota
    cpu_usage_seconds: float | None  # cumulative CPU time of the group

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_limit_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_limit_bytes

    def as_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _own_groups(proc_cgroup: Path) -> dict[str, str]:
    """controller -> group path from /proc/<pid>/cgroup ("" is the v2 unified group)."""
    groups: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            groups[controller] = parts[2]
    return groups


def _group_dir(mount: Path, group: str) -> Path:
    """The group's folder under the mount; the mount itself when the group is not visible there
    (a container with its own cgroup namespace sees its group as the root)."""
    candidate = mount / group.lstrip("/")
    return candidate if group and candidate.is_dir() else mount


def _ancestors(start: Path, mount: Path) -> list[Path]:
    chain = [start]
    while chain[-1] != mount and mount in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _tightest(values) -> int | None:
    limits = [v for v in values if v is not None and 0 < v < V1_UNLIMITED]
    return min(limits) if limits else None


def _v2(root: Path, groups: dict[str, str]) -> CgroupReading:
    group = _group_dir(root, groups.get("", "/"))
    chain = _ancestors(group, root)
    limit = _tightest(_int(folder / "memory.max") for folder in chain)
    used = _int(group / "memory.current")
    if used is not None:
        used = max(0, used - _stat(group / "memory.stat").get("inactive_file", 0))
    cores = None
    for folder in chain:
        quota, _, period = (_read(folder / "cpu.max") or "max").partition(" ")
        if quota != "max" and period:
            try:
                found = int(quota) / int(period)
            except (ValueError, ZeroDivisionError):
                continue
            cores = found if cores is None else min(cores, found)
    usage_usec = _stat(group / "cpu.stat").get("usage_usec")
    return CgroupReading("v2", str(group), used, limit, cores, usage_usec / 1e6 if usage_usec is not None else None)


def _v1(root: Path, groups: dict[str, str]) -> CgroupReading:
    memory_mount = root / "memory"
    memory = _group_dir(memory_mount, groups.get("memory", "/"))
    limit = _tightest(_int(folder / "memory.limit_in_bytes") for folder in _ancestors(memory, memory_mount))
    used = _int(memory / "memory.usage_in_bytes")
    if used is not None:
        stat = _stat(memory / "memory.stat")
        used = max(0, used - stat.get("total_inactive_file", stat.get("inactive_file", 0)))
    cores = None
    cpu_mount = next((root / name for name in ("cpu,cpuacct", "cpu") if (root / name).is_dir()), None)
    if cpu_mount is not None:
        cpu = _group_dir(cpu_mount, groups.get("cpu", "/"))
        for folder in _ancestors(cpu, cpu_mount):
            quota, period = _int(folder / "cpu.cfs_quota_us"), _int(folder / "cpu.cfs_period_us")
            if quota is not None and quota > 0 and period:
                cores = quota / period if cores is None else min(cores, quota / period)
    usage = None
    acct_mount = next((root / name for name in ("cpu,cpuacct", "cpuacct") if (root / name).is_dir()), None)
    if acct_mount is not None:
        nanoseconds = _int(_group_dir(acct_mount, groups.get("cpuacct", "/")) / "cpuacct.usage")
        usage = nanoseconds / 1e9 if nanoseconds is not None else None
    return CgroupReading("v1", str(memory), used, limit, cores, usage)


def read_cgroup(root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> CgroupReading | None:
    """The process's cgroup figures, or None when no cgroup filesystem is mounted at `root`."""
    root, groups = Path(root), _own_groups(Path(proc_cgroup))
    if (root / "cgroup.controllers").is_file():
        return _v2(root, groups)
    if (root / "memory").is_dir():
        return _v1(root, groups)
    return None
