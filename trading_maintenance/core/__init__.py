"""Pure logic: no Dagster imports. Tests call these functions directly."""
