"""A copy of the backup repository in an S3-compatible object store, with its own retention.

The remote copy has the repository's layout under its prefix (config.json, data/<2 hex>/<pack>,
index/<id>, snapshots/<id>), so downloading it gives a repository the same key opens. Every name
is the SHA-256 of the object's bytes, so an object already there is never sent again, and each
upload is checked against its size and that hash.

What goes up: the local snapshots the remote retention keeps (those within remote_retention_days,
and always the newest) that are not there yet, then the packs holding their chunks that no remote
index lists, then one new index naming those packs, then the snapshots: a crash at any point leaves
the remote copy consistent (at worst, packs no index lists, which the next mirror indexes).
Remote retention forgets older snapshots and removes packs no remaining snapshot references: a new
index first, the old index objects next, the packs last, the order the local prune uses.
The caller holds the local repository's exclusive lock, which also serialises writers of the copy.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from trading_maintenance.core.backups.archive import BackupRef, plan_backup_retention
from trading_maintenance.core.backups.archive_reader import manifest_identity, manifest_members
from trading_maintenance.core.backups.repository import MAX_METADATA_BYTES, Repository, RepositoryError, _is_hex_id
from trading_maintenance.core.backups.snapshots import RetentionReport, list_snapshots, retention_plan, unreferenced_packs


@dataclass
class MirrorReport:
    snapshots: list[str] = field(default_factory=list)  # backup ids uploaded
    packs: int = 0
    bytes: int = 0
    skipped_present: int = 0  # objects already in the store
    index: str | None = None


@dataclass
class RemoteListing:
    refs: list[BackupRef]  # oldest first by the snapshot's own creation time
    problems: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


class RemoteRepository:
    """The copy of `repo` under s3://bucket/prefix, through a boto3 S3 client."""

    def __init__(self, client, bucket: str, prefix: str, repo: Repository):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        self.repo = repo

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, folder: str, name: str) -> str:
        return f"{self.prefix}{folder}/{name[:2]}/{name}" if folder == "data" else f"{self.prefix}{folder}/{name}"

    def objects(self, folder: str) -> dict[str, int]:
        """Object name -> size for the content-addressed objects of one folder (anything else is ignored)."""
        found: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{folder}/"):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if _is_hex_id(name) and obj["Key"] == self._key(folder, name):
                    found[name] = obj["Size"]
        return found

    def _get(self, folder: str, name: str, limit: int = MAX_METADATA_BYTES) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(folder, name))["Body"]
        data = body.read(limit + 1)
        if len(data) > limit:
            raise RepositoryError(f"remote {folder}/{name[:16]} is larger than {limit} bytes: refused")
        return data

    def _put(self, folder: str, name: str, data: bytes) -> None:
        """One object whose name is the SHA-256 of data; the store checks the hash on receipt."""
        self.client.put_object(Bucket=self.bucket, Key=self._key(folder, name), Body=data,
                               ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                               Metadata={"sha256": hashlib.sha256(data).hexdigest()})
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(folder, name))
        if head["ContentLength"] != len(data):
            raise RepositoryError(f"remote {folder}/{name[:16]}: {head['ContentLength']} bytes after upload, expected {len(data)}")

    def _put_file(self, folder: str, name: str, path) -> int:
        with open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != name:
            raise RepositoryError(f"local {folder}/{name[:16]} does not match its name: not uploaded; run `backups check`")
        self._put(folder, name, data)
        return len(data)

    # ----------------------------------------------------------------- reading

    def remote_index(self) -> dict[str, dict[str, list[list]]]:
        """Index object name -> its pack map."""
        return {name: self.repo.open_index(name, self._get("index", name)) for name in sorted(self.objects("index"))}

    def list_snapshots(self) -> RemoteListing:
        listing = RemoteListing([])
        for name in sorted(self.objects("snapshots")):
            label = f"remote snapshot {name[:16]}"
            try:
                manifest = self.repo.open_snapshot(name, self._get("snapshots", name))
                backup_id, created = manifest_identity(manifest, label)
                members = manifest_members(manifest, label)
            except RepositoryError as exc:
                listing.problems.append(f"{label}: {exc}")
                listing.unreadable.append(name)
                continue
            listing.refs.append(BackupRef(backup_id, name, created, sum(m["size"] for m in members.values()),
                                          f"{self.describe()}snapshots/{name}", self.repo.keys.encrypted, "repository"))
        listing.refs.sort(key=lambda r: (r.created_at, r.backup_id))
        return listing

    # ----------------------------------------------------------------- mirroring

    def mirror(self, retention_days: int, now: datetime) -> MirrorReport:
        """Upload what the remote retention keeps and the store lacks (see the module's docstring)."""
        report = MirrorReport()
        local = list_snapshots(self.repo, cached=False)  # what is mirrored is read, not taken from the cache
        if local.unreadable:
            raise RepositoryError("; ".join(local.problems))
        plan = plan_backup_retention(local.refs, retention_days, now)
        present = self.objects("snapshots")
        wanted = [ref for ref in plan.keep if ref.name not in present]
        report.skipped_present += len(plan.keep) - len(wanted)
        if not self._list(f"{self.prefix}config.json"):
            self._put_config()
        if not wanted:
            return report
        index, files = self.repo.load_index()
        needed_packs: set[str] = set()
        for ref in wanted:
            for entry in self.repo.read_snapshot(ref.name).get("members", []):
                for chunk in entry.get("chunks", []):
                    if chunk not in index:
                        raise RepositoryError(f"snapshot {ref.name[:16]} needs chunk {chunk[:16]}, which no local index "
                                              f"lists: not mirrored; run `backups check`")
                    needed_packs.add(index[chunk].pack)
        remote_indexed = {pack for packs in self.remote_index().values() for pack in packs}
        remote_packs = self.objects("data")
        to_index = sorted(needed_packs - remote_indexed)
        local_entries: dict[str, list[list]] = {}
        for name in files:
            for pack, entries in self.repo.read_index_file(name).items():
                if pack in to_index:
                    local_entries[pack] = entries
        for pack in to_index:
            if pack in remote_packs:
                report.skipped_present += 1
                continue
            report.bytes += self._put_file("data", pack, self.repo.pack_path(pack))
            report.packs += 1
        if to_index:
            name, sealed = self.repo.seal_index({pack: local_entries[pack] for pack in to_index})
            self._put("index", name, sealed)
            report.index = name
            report.bytes += len(sealed)
        for ref in wanted:
            report.bytes += self._put_file("snapshots", ref.name, self.repo.root / "snapshots" / ref.name)
            report.snapshots.append(ref.backup_id)
        return report

    def _list(self, prefix: str) -> list[dict]:
        return self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])

    def _put_config(self) -> None:
        """The repository's configuration (salt and key check, no secret), so the copy opens on its own."""
        data = (self.repo.root / "config.json").read_bytes()
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}config.json", Body=data,
                               Metadata={"sha256": hashlib.sha256(data).hexdigest()})

    # ----------------------------------------------------------------- retention

    def forget_and_prune(self, retention_days: int, now: datetime, protect: set[str] = frozenset(),
                         dry_run: bool = False) -> RetentionReport:
        listing = self.list_snapshots()
        report, plan = retention_plan(listing, retention_days, now, protect, where="remote ")
        if dry_run:
            return report
        for ref in plan.delete:
            self.client.delete_object(Bucket=self.bucket, Key=self._key("snapshots", ref.name))
        if listing.unreadable:
            return report
        indexes = self.remote_index()
        pack_entries: dict[str, list[list]] = {}
        for packs in indexes.values():
            for pack, entries in packs.items():
                pack_entries.setdefault(pack, entries)
        unused = unreferenced_packs({pack: [e[0] for e in entries] for pack, entries in pack_entries.items()},
                                    (self.repo.open_snapshot(ref.name, self._get("snapshots", ref.name)) for ref in plan.keep))
        if not unused:
            return report
        kept = {pack: entries for pack, entries in pack_entries.items() if pack not in unused}
        new_name = None
        if kept:
            new_name, sealed = self.repo.seal_index(kept)
            self._put("index", new_name, sealed)
        for name in indexes:
            if name != new_name:
                self.client.delete_object(Bucket=self.bucket, Key=self._key("index", name))
        sizes = self.objects("data")
        for pack in sorted(unused):
            if pack in sizes:
                self.client.delete_object(Bucket=self.bucket, Key=self._key("data", pack))
                report.freed_bytes += sizes[pack]
                report.removed_packs += 1
        return report
