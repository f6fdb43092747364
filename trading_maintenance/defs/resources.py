"""Every resource, bound once for the whole code location from the validated settings.

`build_resources` keeps secrets out of the resources' configuration (environment secrets bound as
`EnvVar`, config-file secrets through `SettingsBoundResource`).
"""

import dagster as dg

from trading_maintenance.defs.task import load_time_settings
from trading_maintenance.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(load_time_settings()))
