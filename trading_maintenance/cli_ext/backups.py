"""`trading-maintenance restore` (and `backups list`): restore from a verified backup archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

EXIT_REFUSED = 3


def _archive_for(settings, which: str, on_date: str | None, work: Path, secret: str | None) -> tuple[Path, list[str]]:
    """The archive to restore and the problems met choosing it (archives left out, misnamed copies)."""
    from trading_maintenance.core.backups.archive import ArchiveError, is_temporary_name, select_backup
    from trading_maintenance.core.backups.archive_reader import identify_local_backups

    candidate = Path(which)
    if which not in ("latest",) and (candidate.is_file() or "/" in which):
        if not candidate.is_file():
            raise ArchiveError(f"{which}: no such backup file")
        if is_temporary_name(candidate.name):
            raise ArchiveError(f"{candidate.name} is the temporary file of an unfinished backup, not a backup")
        return candidate, []
    repository = _repository(settings, secret)
    if repository is not None and repository.snapshot_ids():
        from trading_maintenance.core.backups.snapshots import select_snapshot

        return select_snapshot(repository, which, on_date, settings.maintenance.scheduling.timezone).name, []
    listing = identify_local_backups(settings.backups_dir, secret)
    try:
        return Path(select_backup(listing.refs, which, on_date, settings.maintenance.scheduling.timezone).location), listing.problems
    except ArchiveError:
        if not (settings.backup.remote_enabled and settings.backup.s3_bucket):
            raise
    from trading_maintenance.resources import build_resources

    store = build_resources(settings)["object_store"]
    ref = select_backup(store.list_backups(), which, on_date, settings.maintenance.scheduling.timezone)
    return store.download(ref.name, work / ref.name), listing.problems


def _repository(settings, secret: str | None):
    """The local backup repository, or None when no backup has created one yet."""
    from trading_maintenance.core.backups.repository import REPOSITORY_DIR, Repository

    if not (Path(settings.backups_dir) / REPOSITORY_DIR / "config.json").exists():
        return None
    return Repository.open_or_create(settings.backups_dir, secret, create=False)


def register(cli: click.Group) -> None:
    @cli.command("restore")
    @click.option("--type", "kind", type=click.Choice(["config", "redis", "trading_data", "database", "all"]), required=True,
                  help="what to restore")
    @click.option("--backup", "which", default="latest", show_default=True, help="latest, a backup id, or a path to an archive")
    @click.option("--date", "on_date", help="YYYY-MM-DD: use the latest backup made on that day (New York time)")
    @click.option("--dry-run", is_flag=True, help="verify the archive and list what would change; change nothing")
    @click.option("--force", is_flag=True, help="overwrite existing keys, files, configuration or a non-empty database")
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    def restore(kind: str, which: str, on_date: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
        """Restore from a backup. Every checksum is verified before anything is touched; a tampered,
        truncated or wrongly keyed archive, or one with a member escaping its target, is refused."""
        import tempfile

        from trading_maintenance.core.backups.archive import ArchiveError
        from trading_maintenance.core.backups.restore import TYPES, RestoreFailed, describe_plan, restore_backup
        from trading_maintenance.core.backups.restore_parts import RestoreRefused
        from trading_maintenance.core.common.masking import mask_text
        from trading_maintenance.resources.database import database_engine
        from trading_maintenance.resources.redis import redis_client
        from trading_maintenance.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        secret = settings.backup.encryption_key.get_secret_value() if settings.backup.encryption_key else None
        secrets = [s for s in (secret, settings.redis_url(), settings.database_url()) if s]
        types = set(TYPES) if kind == "all" else {kind}
        settings.temp_dir.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(prefix="restore-download-", dir=settings.temp_dir) as tmp:
                archive, choice_problems = _archive_for(settings, which, on_date, Path(tmp), secret)
                for problem in choice_problems:
                    click.echo(f"warning: {mask_text(problem, secrets)}", err=True)
                repository = None if Path(str(archive)).exists() else _repository(settings, secret)
                report = restore_backup(
                    archive, secret, types, stage_root=settings.temp_dir, repository=repository,
                    config_path=Path(settings.config_path) if settings.config_path else None,
                    redis_client=redis_client(settings.redis_url(), settings.data_dir) if "redis" in types else None,
                    engine=database_engine(settings.database_url(), settings.data_dir) if "database" in types else None,
                    db_url=settings.database_url(), data_dir=settings.data_dir,
                    data_folders=tuple(settings.backup.trading_data_folders), force=force, dry_run=dry_run,
                )
        except RestoreFailed as exc:
            click.echo(f"restore failed: {mask_text(str(exc), secrets)}", err=True)
            sys.exit(1)
        except RestoreRefused as exc:
            click.echo(mask_text(str(exc), secrets), err=True)
            sys.exit(EXIT_REFUSED)
        except ArchiveError as exc:
            click.echo(f"refused: {mask_text(str(exc), secrets)}", err=True)
            sys.exit(EXIT_REFUSED)
        except Exception as exc:  # noqa: BLE001 - one clear line, secrets masked
            click.echo(f"restore failed: {type(exc).__name__}: {mask_text(str(exc), secrets)}", err=True)
            sys.exit(1)
        data = report.as_dict()
        if as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            click.echo(f"backup {report.backup_id} ({Path(str(archive)).name}): every checksum verified")
            for warning in report.warnings:
                click.echo(f"warning: {warning}", err=True)
            for part, plan in report.plan.items():
                if dry_run:
                    click.echo(f"  {part}: {describe_plan(part, plan)}")
                else:
                    click.echo(f"  {part}: {report.state.get(part, 'unchanged')}")
            for problem in report.problems:
                click.echo(f"  problem: {problem}", err=True)
            if dry_run:
                click.echo("dry run: nothing was changed")
        if report.problems:
            sys.exit(1)

    group = cli.commands.get("backups")
    if group is None:
        @cli.group("backups")
        def group() -> None:
            """Backup archives: list local and remote copies."""

    @group.command("list")
    @click.option("--remote", is_flag=True, help="list the S3 copies too")
    def backups_list(remote: bool) -> None:
        """Backups on disk (and in S3), newest last."""
        from trading_maintenance.core.backups.archive import ArchiveError, list_local_backups
        from trading_maintenance.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        from trading_maintenance.core.backups.snapshots import list_snapshots, snapshot_time

        secret = settings.backup.encryption_key.get_secret_value() if settings.backup.encryption_key else None
        try:
            repository = _repository(settings, secret)
        except ArchiveError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        if repository is not None:
            snapshots = list_snapshots(repository)
            click.echo(f"{'snapshot':<16}  {'backup id':<18}  {'time (UTC)':<20}  {'files':>6}  {'logical bytes':>14}  {'new bytes':>12}")
            for ref in snapshots.refs:
                info = snapshots.details[ref.name]
                click.echo(f"{ref.name[:16]}  {ref.backup_id:<18}  {snapshot_time(ref):<20}  {info['files']:>6}  "
                           f"{info['logical_bytes']:>14}  {info['new_bytes']:>12}")
            for problem in snapshots.problems:
                click.echo(f"problem: {problem}", err=True)
        local = list_local_backups(settings.backups_dir)
        if not local and repository is None:
            click.echo(f"no backups in {settings.backups_dir}")
        for ref in local:
            click.echo(f"{ref.backup_id}  {ref.size:>12}  {ref.location}")
        if not remote:
            return
        if not (settings.backup.remote_enabled and settings.backup.s3_bucket):
            click.echo("remote: storage is off (set backup.remote_enabled and backup.s3_bucket); no remote copies listed",
                       err=True)
            sys.exit(2)
        from trading_maintenance.resources import build_resources

        store = build_resources(settings)["object_store"]
        if repository is not None:
            copy = store.repository(repository).list_snapshots()
            for ref in copy.refs:
                click.echo(f"remote {ref.name[:16]}  {ref.backup_id:<18}  {snapshot_time(ref):<20}  {ref.size:>14}")
            for problem in copy.problems:
                click.echo(f"problem: {problem}", err=True)
        refs = store.list_backups()
        if not refs and repository is None:
            click.echo(f"no backups in {store.describe()}")
        for ref in refs:
            click.echo(f"{ref.backup_id}  {ref.size:>12}  {ref.location}")

    @group.command("check")
    @click.option("--read-data", is_flag=True, help="read and verify every chunk, not only the structure")
    def backups_check(read_data: bool) -> None:
        """Verify the backup repository: indexes, packs and snapshots (and with --read-data every chunk)."""
        from trading_maintenance.core.backups.archive import ArchiveError
        from trading_maintenance.core.backups.snapshots import check_repository
        from trading_maintenance.settings import SettingsError, load_settings

        try:
            settings = load_settings()
            secret = settings.backup.encryption_key.get_secret_value() if settings.backup.encryption_key else None
            repository = _repository(settings, secret)
        except (SettingsError, ArchiveError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        if repository is None:
            click.echo(f"no backup repository in {settings.backups_dir}", err=True)
            sys.exit(2)
        with repository.lock(exclusive=False):
            problems = check_repository(repository, read_data=read_data)
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        click.echo(f"repository {repository.root}: {len(problems)} problems" + (" (every chunk read)" if read_data else ""))
        sys.exit(1 if problems else 0)

    @group.command("export")
    @click.argument("snapshot", default="latest")
    @click.option("--to", "dest", type=click.Path(file_okay=False), required=True, help="folder for the .tar.zst archive")
    def backups_export(snapshot: str, dest: str) -> None:
        """Export one snapshot (latest, a backup id or snapshot id) as a single portable tar.zst archive."""
        from trading_maintenance.core.backups.archive import ArchiveError
        from trading_maintenance.core.backups.snapshots import export_snapshot, select_snapshot
        from trading_maintenance.settings import SettingsError, load_settings

        try:
            settings = load_settings()
            secret = settings.backup.encryption_key.get_secret_value() if settings.backup.encryption_key else None
            repository = _repository(settings, secret)
            if repository is None:
                raise ArchiveError(f"no backup repository in {settings.backups_dir}")
            with repository.lock(exclusive=False):
                result = export_snapshot(repository, select_snapshot(repository, snapshot).name, Path(dest), secret)
        except (SettingsError, ArchiveError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"{result.path}  {result.size} bytes  backup {result.backup_id}")
