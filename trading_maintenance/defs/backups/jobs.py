import dagster as dg

from trading_maintenance.defs.backups.assets import BACKUP_ASSET
from trading_maintenance.defs.backups.checks import restore_drill
from trading_maintenance.defs.common import job_tags

backup_archive_job = dg.define_asset_job(
    "backup_archive_job",
    selection=dg.AssetSelection.assets(BACKUP_ASSET).without_checks(),
    description="Back up configuration, Redis, the trading database and trading data; verify; upload; apply retention.",
    tags=job_tags("backup"),
)

backup_verification_job = dg.define_asset_job(
    "backup_verification_job",
    selection=dg.AssetSelection.checks(restore_drill),
    description="Restore drill: restore the latest backup into scratch targets and compare with its manifest.",
    tags=job_tags("backup_verification"),
)
