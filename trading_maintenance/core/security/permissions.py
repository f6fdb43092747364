"""File permissions of everything that holds a secret: owner-only, or reported (and optionally fixed).

Which files: `.env*` files, the configuration file, everything under backups/, key and credential
files (by name), and any file in which the secret scan found a secret. A sensitive file must not be
readable or writable by group or others; a folder holding backups or keys must not be writable or
listable by others. The fix removes the group/other bits (files 0600-like, folders 0700-like),
after a dry run that lists exactly those changes, and re-checks each mode afterwards.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SENSITIVE_GLOBS = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.kdbx", "id_rsa*", "id_ed25519*",
    "id_ecdsa*", "*credentials*", "*secret*", ".pgpass", ".netrc", "*.htpasswd", "maintenance.yml",
)


@dataclass(frozen=True)
class PermissionFinding:
    path: str
    kind: str  # "file" / "dir"
    mode: str  # octal, e.g. "0644"
    problem: str
    severity: str
    fixed_mode: str
    reason: str  # why the path is sensitive

    def as_dict(self) -> dict:
        return asdict(self)


def _octal(mode: int) -> str:
    return f"0{stat.S_IMODE(mode):03o}"


# A configuration file with no secret values in it (they come from the environment): reading it
# reveals nothing, so world-readable is a warning there; writable by others stays critical.
CONFIG_WITHOUT_SECRETS = "configuration file (no secret values in it)"


def judge_mode(mode: int, is_dir: bool) -> tuple[str, str] | None:
    """(problem, severity) for a sensitive path's mode, or None when it is owner-only."""
    perms = stat.S_IMODE(mode)
    problems = []
    severity = "warning"
    if perms & stat.S_IROTH:
        problems.append("world-readable")
        if not is_dir:  # a listable folder is a warning; a readable secret is critical
            severity = "critical"
    if perms & stat.S_IWOTH:
        problems.append("world-writable")
        severity = "critical"
    if perms & stat.S_IWGRP:
        problems.append("group-writable")
        severity = "critical"
    if perms & stat.S_IRGRP:
        problems.append("group-readable")
    if not is_dir and perms & (stat.S_IXGRP | stat.S_IXOTH) and not problems:
        problems.append("group/other-executable")
    if is_dir and perms & stat.S_IXOTH and not problems:
        problems.append("others can traverse")
    if not problems:
        return None
    return ", ".join(problems), severity


def tightened(mode: int) -> int:
    """Owner bits kept, group and other bits removed (setuid/setgid/sticky dropped too)."""
    return stat.S_IMODE(mode) & 0o700


def is_sensitive_name(name: str, globs: Iterable[str] = SENSITIVE_GLOBS) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in globs)


def collect_sensitive_paths(
    data_root: Path,
    config_path: Path | None = None,
    backups_dir: Path | None = None,
    extra_roots: Iterable[Path] = (),
    files_with_secrets: Iterable[Path] = (),
    globs: Iterable[str] = SENSITIVE_GLOBS,
    config_holds_secrets: bool = True,
) -> dict[Path, str]:
    """Sensitive path -> why it is sensitive (symlinks are skipped: chmod would follow them)."""
    globs = tuple(globs)
    out: dict[Path, str] = {}

    def add(path: Path, why: str) -> None:
        if path.is_symlink() or not path.exists():
            return
        out.setdefault(path, why)

    if config_path is not None:
        add(Path(config_path), "configuration file" if config_holds_secrets else CONFIG_WITHOUT_SECRETS)
    for root in [data_root, *extra_roots]:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "node_modules", "__pycache__")]
            for name in filenames:
                if is_sensitive_name(name, globs):
                    add(Path(dirpath) / name, "key, credential or environment file")
    if backups_dir is not None and Path(backups_dir).is_dir():
        add(Path(backups_dir), "backups folder")
        for dirpath, dirnames, filenames in os.walk(backups_dir):
            for d in dirnames:
                add(Path(dirpath) / d, "backups folder")
            for name in filenames:
                if not name.endswith(".tmp"):
                    add(Path(dirpath) / name, "backup")
    for path in files_with_secrets:
        add(Path(path), "holds a secret (found by the secret scan)")
    return out


def check_permissions(paths: dict[Path, str]) -> tuple[list[PermissionFinding], list[str]]:
    """Findings for sensitive paths that are not owner-only; errors for paths that cannot be read."""
    findings, errors = [], []
    for path, why in sorted(paths.items()):
        try:
            st = os.lstat(path)
        except OSError as exc:
            errors.append(f"{path}: {type(exc).__name__}")
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        verdict = judge_mode(st.st_mode, is_dir)
        if verdict is None:
            continue
        problem, severity = verdict
        if why == CONFIG_WITHOUT_SECRETS and "writable" not in problem:
            severity = "warning"
        findings.append(
            PermissionFinding(
                path=str(path),
                kind="dir" if is_dir else "file",
                mode=_octal(st.st_mode),
                problem=problem,
                severity=severity,
                fixed_mode=_octal(tightened(st.st_mode)),
                reason=why,
            )
        )
    return findings, errors


@dataclass
class PermissionFix:
    path: str
    old_mode: str
    new_mode: str
    applied: bool = False
    verified: bool = False
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def fix_permissions(findings: Iterable[PermissionFinding], dry_run: bool = True) -> list[PermissionFix]:
    """Tighten each finding's mode (dry run: only the plan). Each change is re-read to verify."""
    fixes = []
    for f in findings:
        fix = PermissionFix(path=f.path, old_mode=f.mode, new_mode=f.fixed_mode)
        if not dry_run:
            try:
                st = os.lstat(f.path)
                if stat.S_ISLNK(st.st_mode):
                    fix.error = "symlink: not followed"
                else:
                    os.chmod(f.path, int(f.fixed_mode, 8))
                    fix.applied = True
                    fix.verified = _octal(os.lstat(f.path).st_mode) == f.fixed_mode
                    if not fix.verified:
                        fix.error = "mode did not change as expected"
            except OSError as exc:
                fix.error = type(exc).__name__
        fixes.append(fix)
    return fixes
