"""Backups: the backup_archive asset, its weekly schedule, and the restore drill (asset check + sensor)."""
