"""Database maintenance planning: which tables to VACUUM/ANALYZE, which indexes to REINDEX or drop,
what to purge, and how an archive is verified. Pure functions; SQL lives in db_maintenance_sql.py.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

PAGE = 8192


@dataclass
class TableStats:
    name: str  # schema-qualified
    live_tuples: int
    dead_tuples: int
    total_bytes: int
    table_bytes: int
    index_bytes: int
    last_vacuum: str | None = None
    last_autovacuum: str | None = None
    last_analyze: str | None = None
    last_autoanalyze: str | None = None
    xid_age: int | None = None

    @property
    def dead_ratio(self) -> float:
        total = self.live_tuples + self.dead_tuples
        return self.dead_tuples / total if total else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "dead_ratio": round(self.dead_ratio, 4)}


@dataclass
class IndexStats:
    name: str  # schema-qualified
    table: str
    bytes: int
    tuples: float
    tuple_width: float
    valid: bool = True
    bloat_pct: float = field(default=0.0)

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_index_bloat(index_bytes: int, tuples: float, key_width: float, fillfactor: float = 0.9) -> float:
    """Percent of a B-tree that is bloat: 1 - expected/actual size.

    Expected leaf size: tuples x (key width + 8-byte tuple header + 4-byte line pointer), rounded up,
    packed at the fillfactor, plus the metapage. A rough estimate, like the usual ioguix query.
    """
    if index_bytes <= 2 * PAGE or tuples <= 0:  # tiny, or never analyzed (reltuples unknown): no estimate
        return 0.0
    per_tuple = max(1.0, key_width) + 8 + 4
    per_tuple = math.ceil(per_tuple / 8) * 8 if per_tuple % 8 else per_tuple
    usable = (PAGE - 24 - 16) * fillfactor
    expected_pages = math.ceil(max(0.0, tuples) * per_tuple / usable) + 1
    expected = expected_pages * PAGE
    return round(max(0.0, (1 - expected / index_bytes) * 100), 2)


@dataclass(frozen=True)
class Action:
    kind: str  # vacuum_analyze / analyze / reindex / drop_invalid_index
    target: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan_postgres(tables: list[TableStats], indexes: list[IndexStats], dead_threshold: int, dead_ratio: float,
                  bloat_threshold_pct: float, bloat_min_bytes: int) -> list[Action]:
    """VACUUM (ANALYZE) tables over the dead-tuple threshold, ANALYZE the rest; REINDEX bloated
    indexes; drop invalid indexes left by a failed CREATE/REINDEX CONCURRENTLY."""
    actions: list[Action] = []
    for t in tables:
        if t.dead_tuples > dead_threshold and t.dead_ratio > dead_ratio:
            actions.append(Action("vacuum_analyze", t.name, f"{t.dead_tuples} dead tuples ({t.dead_ratio:.0%})"))
        else:
            actions.append(Action("analyze", t.name, f"{t.dead_tuples} dead tuples: under the threshold"))
    for i in indexes:
        if not i.valid:
            actions.append(Action("drop_invalid_index", i.name, "invalid (left by a failed concurrent build)"))
        elif i.bytes >= bloat_min_bytes and i.bloat_pct > bloat_threshold_pct:
            actions.append(Action("reindex", i.name, f"estimated bloat {i.bloat_pct:.0f}% of {i.bytes} bytes"))
    return actions


def id_checksum(ids) -> str:
    """sha256 over the sorted ids: the archive and the database must agree on exactly which rows."""
    digest = hashlib.sha256()
    for value in sorted(int(i) for i in ids):
        digest.update(f"{value}\n".encode())
    return digest.hexdigest()


def batches(ids: list[int], size: int) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


@dataclass(frozen=True)
class PurgeTarget:
    table: str  # name in trading_schema
    time_column: str
    only_final: bool = False  # orders: only final statuses
    only_closed: bool = False  # positions: only closed ones


PURGE_TARGETS = (
    PurgeTarget("fills", "timestamp"),
    PurgeTarget("orders", "created_at", only_final=True),
    PurgeTarget("positions", "exit_time", only_closed=True),
)
