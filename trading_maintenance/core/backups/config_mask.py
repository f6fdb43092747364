"""The configuration file in a backup: every secret value masked, and put back on restore."""

from __future__ import annotations

import re
from typing import Any

import yaml

from trading_maintenance.core.backups.archive import ArchiveError

# --------------------------------------------------------------------------- configuration masking

MASKED = "***masked-in-backup***"
# Key names that hold a secret wherever they appear, besides the settings' own SECRET_KEYS.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_key|apikey|private_key|encryption_key|webhook_url|credentials?)$",
                         re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)


class ConfigMaskError(ArchiveError):
    """The configuration file cannot be parsed, so it cannot be masked (and is not backed up as is)."""


def _secret_path(dotted: str, secret_keys: set[str]) -> bool:
    if dotted in secret_keys or any(dotted.startswith(k + ".") for k in secret_keys):
        return True
    return any(SECRET_NAME.search(part) for part in dotted.split("."))


def _mask_node(node: Any, dotted: str, secret_keys: set[str], masked: list[str], values: set) -> Any:
    """Mask secret paths; `values` collects the masked values (first pass) or, once filled, masks
    the same value wherever else it appears (an anchor or a copy under an innocent key)."""
    if isinstance(node, dict):
        return {key: _mask_node(value, f"{dotted}.{key}" if dotted else str(key), secret_keys, masked, values)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_mask_node(item, dotted, secret_keys, masked, values) for item in node]
    if node is None or node == "" or isinstance(node, bool):
        return node
    secret = _secret_path(dotted, secret_keys) or (isinstance(node, str) and URL_CREDENTIALS.match(node.strip()))
    if secret or (isinstance(node, str) and node in values):
        masked.append(dotted)
        if isinstance(node, str):
            values.add(node)
        return MASKED
    return node


def _parse_config(text: str, what: str) -> dict:
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigMaskError(f"{what} is not valid YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigMaskError(f"{what} is not a YAML mapping")
    return document


def _dump_config(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def mask_config_text(text: str, secret_keys: set[str]) -> tuple[str, list[str]]:
    """The configuration as valid YAML with every non-empty secret value replaced by a placeholder.

    Masking works on the parsed document, so flow style, block scalars, anchors and quoting cannot
    hide a value; a file that does not parse raises ConfigMaskError rather than being copied as is.
    Comments are not kept (YAML parsers drop them).
    """
    masked: list[str] = []
    values: set = set()
    document = _parse_config(text, "the configuration file")
    _mask_node(document, "", set(secret_keys), [], values)
    document = _mask_node(document, "", set(secret_keys), masked, values)
    return _dump_config(document), sorted(set(masked))


def _unmask_node(node: Any, current: Any) -> Any:
    if isinstance(node, dict):
        return {key: _unmask_node(value, current.get(key) if isinstance(current, dict) else None) for key, value in node.items()}
    if isinstance(node, list):
        return [_unmask_node(item, current[i] if isinstance(current, list) and i < len(current) else None)
                for i, item in enumerate(node)]
    if node == MASKED:
        return None if current == MASKED or isinstance(current, (dict, list)) else current
    return node


def unmask_config_text(backup_text: str, current_text: str) -> str:
    """A masked configuration with each masked secret taken from the current file (or left empty)."""
    document = _parse_config(backup_text, "the configuration in the backup")
    current = _parse_config(current_text, "the current configuration file") if current_text else {}
    return _dump_config(_unmask_node(document, current))


def same_config(text_a: str, text_b: str) -> bool:
    """Whether two configuration texts hold the same settings (formatting aside)."""
    try:
        return _parse_config(text_a, "a") == _parse_config(text_b, "b")
    except ConfigMaskError:
        return text_a == text_b
