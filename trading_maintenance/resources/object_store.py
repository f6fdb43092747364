"""Remote copies of backups in S3 or any S3-compatible store (MinIO, Ceph, moto) through boto3."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field

from trading_maintenance.core.backups.archive import BackupRef, parse_archive_name
from trading_maintenance.core.backups.remote_repository import RemoteRepository
from trading_maintenance.core.backups.repository import Repository

BACKUP_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class ObjectStoreResource(dg.ConfigurableResource):
    """Where backups go off the host: bucket + prefix; `endpoint_url` for MinIO and the like.

    Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
    profile or an instance role) unless set here. Files above `multipart_threshold_mb` are uploaded
    in parts. Every upload is verified: size and the SHA-256 stored as object metadata, and the
    object's bytes read back and hashed.
    """

    enabled: bool = Field(default=False, description="backup.remote_enabled (BACKUP_REMOTE_ENABLED)")
    bucket: str = Field(default="", description="backup.s3_bucket (BACKUP_S3_BUCKET)")
    prefix: str = Field(default="trading-maintenance/", description="key prefix for this deployment's backups")
    endpoint_url: str = Field(default="", description="S3-compatible endpoint, e.g. http://minio:9000; empty = AWS")
    region_name: str = Field(default="us-east-1")
    access_key_id: str = Field(default="", description="empty = the standard AWS credential chain")
    secret_access_key: str = Field(default="", description="empty = the standard AWS credential chain (secret)")
    multipart_threshold_mb: int = Field(default=64, description="files larger than this are uploaded in parts")
    verify_download: bool = Field(default=True, description="read every uploaded object back and compare its SHA-256")

    def client(self):
        import boto3
        from botocore.config import Config

        kwargs = {"region_name": self.region_name, "config": Config(retries={"max_attempts": 5, "mode": "standard"})}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        return boto3.client("s3", **kwargs)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} via {self.endpoint_url}" if self.endpoint_url else where

    def key_for(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        size = self.multipart_threshold_mb * 1024 * 1024
        return TransferConfig(multipart_threshold=size, multipart_chunksize=max(size, 8 * 1024 * 1024))

    def upload(self, path: str | Path, sha256: str, backup_id: str = "", created_at: datetime | None = None) -> dict:
        """The archive, with its SHA-256 and (from its verified manifest) its backup id and creation time
        as metadata: listings order by those, not by a name that may have been changed."""
        path = Path(path)
        key = self.key_for(path.name)
        metadata = {"sha256": sha256}
        if backup_id and created_at is not None:
            metadata.update({"backup-id": backup_id, "created-at": created_at.astimezone(timezone.utc).isoformat()})
        self.client().upload_file(
            str(path), self.bucket, key, ExtraArgs={"Metadata": metadata}, Config=self._transfer_config()
        )
        return {"bucket": self.bucket, "key": key, "url": f"s3://{self.bucket}/{key}"}

    def verify(self, name: str, size: int, sha256: str) -> list[str]:
        """Problems with the remote copy (empty list: it is there, complete and identical)."""
        client = self.client()
        key = self.key_for(name)
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return [f"s3://{self.bucket}/{key}: not found after upload ({type(exc).__name__})"]
        problems = []
        if head["ContentLength"] != size:
            problems.append(f"s3://{self.bucket}/{key}: {head['ContentLength']} bytes, expected {size}")
        if head.get("Metadata", {}).get("sha256") != sha256:
            problems.append(f"s3://{self.bucket}/{key}: sha256 metadata missing or different")
        if self.verify_download and not problems:
            digest = hashlib.sha256()
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
            if digest.hexdigest() != sha256:
                problems.append(f"s3://{self.bucket}/{key}: content read back differs from the local archive")
        return problems

    def list_backups(self) -> list[BackupRef]:
        """Archives oldest first by the backup id and creation time their manifest recorded at upload
        (kept as object metadata); an archive uploaded without them is placed by its name."""
        refs = []
        client = self.client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix):]
                parsed = parse_archive_name(name)
                if parsed is None or "/" in name:
                    continue
                backup_id, created, fmt, enc = parsed
                metadata = client.head_object(Bucket=self.bucket, Key=obj["Key"]).get("Metadata", {})
                try:
                    created = datetime.fromisoformat(metadata["created-at"])
                    backup_id = metadata["backup-id"] if BACKUP_ID.match(metadata["backup-id"]) else backup_id
                except (KeyError, ValueError):
                    pass
                if created.tzinfo is None:
                    created = created.replace(tzinfo=timezone.utc)
                refs.append(BackupRef(backup_id, name, created, obj["Size"], f"s3://{self.bucket}/{obj['Key']}", enc, fmt))
        return sorted(refs, key=lambda r: (r.created_at, r.backup_id))

    def repository(self, repo: Repository) -> RemoteRepository:
        """The remote copy of the local backup repository, under <prefix>repository/."""
        return RemoteRepository(self.client(), self.bucket, f"{self.prefix}repository/", repo)

    def download(self, name: str, dest: str | Path) -> Path:
        """Download to a temporary name beside dest, then rename (a partial download never looks valid)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.download")
        try:
            self.client().download_file(self.bucket, self.key_for(name), str(tmp), Config=self._transfer_config())
            tmp.chmod(0o600)
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest

    def delete(self, name: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self.key_for(name))
