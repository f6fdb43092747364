"""Settings as a resource, so a run (and a test) can point at another config file or data root."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from trading_maintenance.settings import Settings, load_settings


class MaintenanceSettingsResource(dg.ConfigurableResource):
    """The validated settings of config/maintenance.yml plus environment overrides."""

    config_path: str = Field(default="", description="MAINTENANCE_CONFIG; empty = config/maintenance.yml")
    data_dir: str = Field(default="", description="overrides the data root when set")

    def get(self) -> Settings:
        settings = load_settings(self.config_path or None)
        if self.data_dir:
            from pathlib import Path

            settings = settings.model_copy(update={"data_dir": Path(self.data_dir).resolve()})
        return settings
