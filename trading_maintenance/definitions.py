"""The one Definitions: `dagster dev`, `dagster job execute -m trading_maintenance.definitions`,
`dg launch` and workspace.yaml all load this module (code location `trading_maintenance`).

Every module under `defs/` is loaded: a task's file declares its ops or assets, its job and its
schedule, and nothing else needs editing to add one. Resources are bound once, in
`defs/resources.py`. Settings are validated at load: a bad value fails loading with a message
naming the file or variable and the key, instead of failing at the first run.
"""

from pathlib import Path

import dagster as dg
from dagster._utils.warnings import suppress_dagster_warnings
from dagster.components.core.component_tree import ComponentTree


@suppress_dagster_warnings
def load_defs_folder(path_within_project: Path) -> dg.Definitions:
    """What `dg.load_from_defs_folder` loads, without the catalogue of every installed component
    type it adds for the UI's component browser: this project declares no components, and building
    that catalogue was a quarter of the CPU time of loading the definitions."""
    tree = ComponentTree.for_project(path_within_project=path_within_project)
    return tree.build_defs(tree.defs_module_path)


defs = load_defs_folder(Path(__file__).parent)
