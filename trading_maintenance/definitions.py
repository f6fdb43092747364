"""The one Definitions: `dagster dev`, `dagster job execute -m trading_maintenance.definitions`,
`dg launch` and workspace.yaml all load this module (code location `trading_maintenance`).

Every module under `defs/` is loaded: a task's file declares its ops or assets, its job and its
schedule, and nothing else needs editing to add one. Resources are bound once, in
`defs/resources.py`. Settings are validated at load: a bad value fails loading with a message
naming the file or variable and the key, instead of failing at the first run.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
