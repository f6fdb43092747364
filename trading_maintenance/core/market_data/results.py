"""What a consolidation did, per symbol-timeframe and per month: counts, never frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from trading_maintenance.core.market_data.quality import ANOMALIES


@dataclass
class GroupResult:
    symbol: str
    timeframe: str
    month: str
    archive: str
    files_read: int = 0  # daily files read this run (new, changed, or overlapping what changed)
    files_reused: int = 0  # daily files unchanged since the archive was verified: not read
    rows_in: int = 0  # rows of the files read
    rows_reused: int = 0  # rows of the files reused, already in the archive
    rows_out: int = 0
    duplicates_removed: int = 0  # repeated keys among the rows read (the later written kept)
    archive_rows_replaced: int = 0  # archive rows replaced by a row read this run with the same key
    unchanged: bool = False  # nothing new since the archive was verified: nothing read or written
    bytes_before: int = 0
    bytes_after: int = 0
    previous_archive_rows: int = 0
    quarantined: list[dict] = field(default_factory=list)  # {path, reason, moved_to}
    normalised: list[dict] = field(default_factory=list)  # {path, notes}
    quality: dict[str, int] = field(default_factory=dict)
    archive_duplicate_keys: int = 0  # counted on the rows encoded (batch path) or read back (per-group path); must be 0
    written: bool = False
    verified: bool = False
    error: str = ""
    seconds: float = 0.0

    @property
    def anomalies(self) -> int:
        return int(self.quality.get("bad_bars", 0)) + int(self.quality.get("outside_file_date", 0))

    def as_dict(self) -> dict:
        return asdict(self)



@dataclass
class MonthResult:
    month: str
    groups: list[GroupResult]
    seconds: float
    dry_run: bool
    misnamed: list[dict] = field(default_factory=list)  # {path, reason, moved_to}: not daily files, quarantined
    stale_temporaries: list[str] = field(default_factory=list)  # crashed writers' files removed (or, dry run, found)

    def total(self, name: str) -> int:
        return sum(int(getattr(g, name)) for g in self.groups)

    def quality_total(self, name: str) -> int:
        return sum(int(g.quality.get(name, 0)) for g in self.groups)

    @property
    def failed(self) -> list[GroupResult]:
        return [g for g in self.groups if g.error]

    @property
    def quarantined(self) -> list[dict]:
        return [q for g in self.groups for q in g.quarantined] + self.misnamed

    def summary(self) -> dict:
        before, after = self.total("bytes_before"), self.total("bytes_after")
        out = {
            "month": self.month,
            "dry_run": self.dry_run,
            "groups": len(self.groups),
            "archives_written": sum(1 for g in self.groups if g.written),
            "archives_verified": sum(1 for g in self.groups if g.verified),
            "groups_failed": len(self.failed),
            "archives_unchanged": sum(1 for g in self.groups if g.unchanged),
            "files_read": self.total("files_read"),
            "files_reused": self.total("files_reused"),
            "rows_in": self.total("rows_in"),
            "rows_reused": self.total("rows_reused"),
            "rows_out": self.total("rows_out"),
            "duplicates_removed": self.total("duplicates_removed"),
            "archive_rows_replaced": self.total("archive_rows_replaced"),
            "files_quarantined": len(self.quarantined),
            "files_misnamed": len(self.misnamed),
            "stale_temporaries_removed": 0 if self.dry_run else len(self.stale_temporaries),
            "files_normalised": sum(len(g.normalised) for g in self.groups),
            "bytes_before": before,
            "bytes_after": after,
            "compression_ratio": round(before / after, 3) if after else 0.0,
            "seconds": round(self.seconds, 3),
        }
        for name in (*ANOMALIES, "bad_bars", "missing_days", "missing_bars", "expected_bars"):
            out[name] = self.quality_total(name)
        return out

    def worst(self, limit: int = 10) -> list[dict]:
        rows = []
        for g in self.groups:
            score = g.anomalies + g.duplicates_removed + 100 * len(g.quarantined) + g.quality.get("missing_bars", 0) + (1000 if g.error else 0)
            if score:
                rows.append(
                    {
                        "symbol": g.symbol,
                        "timeframe": g.timeframe,
                        "rows_out": g.rows_out,
                        "duplicates": g.duplicates_removed,
                        "bad_bars": g.quality.get("bad_bars", 0),
                        "outside_file_date": g.quality.get("outside_file_date", 0),
                        "missing_days": g.quality.get("missing_days", 0),
                        "missing_bars": g.quality.get("missing_bars", 0),
                        "quarantined": len(g.quarantined),
                        "error": g.error,
                        "_score": score,
                    }
                )
        rows.sort(key=lambda r: (-r["_score"], r["symbol"], r["timeframe"]))
        for r in rows:
            r.pop("_score")
        return rows[:limit]

