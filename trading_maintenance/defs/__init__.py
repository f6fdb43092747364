"""One package per domain; each exposes `defs` (a resource-free dg.Definitions) merged in definitions.py."""
