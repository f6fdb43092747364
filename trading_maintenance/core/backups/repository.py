"""A content-addressed backup repository (the layout restic and borg use), under `backups/repository/`.

    config.json          format version, chunker parameters, key salt and a key check (no secret);
                         optional "zstd_level" (1-19, default 2): the compression level of new chunks.
                         Measured on 262 MB of snappy parquet (a first backup, CPU of the whole run):
                         level 3 stores 223.1 MB with 1.26-1.28 s, level 2 230.3 MB (+3.2 %) with
                         1.12-1.16 s (-10 %), level 1 236.7 MB (+6.1 %) with 1.02-1.08 s (-17 %). Level 2:
                         the run keeps pace with `tar | zstd -3 -T0` for 3 % more stored; set 3 or more
                         where storage costs more than CPU. Chunks of any level read alike
    data/<2 hex>/<id>    packs: many chunks, each compressed (zstd) then sealed (AES-256-GCM),
                         followed by a sealed header listing them; <id> is the SHA-256 of the pack
    index/<id>           sealed: which pack holds which chunk (written only after its packs are fsynced)
    snapshots/<id>       sealed manifests: the files of one backup and the chunks of each file
    lock                 flock: one writer (backup, forget/prune, repair) at a time

A chunk's id is keyed (so ids reveal nothing about the content) and depends on the plaintext alone,
so a chunk is stored once whatever file or backup it comes from: HMAC-SHA256 of the chunk's SHA-256
(config "chunk_id": "hmac-sha256"; a file of one chunk is hashed once, for its checksum and its id
alike), or in repositories of the first format a keyed BLAKE2b of the plaintext. Keys are derived from the backup
key (scrypt, then BLAKE2b per purpose). scrypt costs ~50 ms of CPU, most of a re-run that finds
little changed, so its result is kept in a local key cache (see KeyCache), never in the repository. Every read authenticates, decompresses within the size the
index declares and checks the chunk's id: a changed byte is found, never restored.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import stat
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import orjson
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trading_maintenance.core.backups.archive import WORK_PREFIX, ArchiveError
from trading_maintenance.core.backups.temporaries import fsync_dir, owned_temp_dir, remove_dead_temporaries
from trading_maintenance.core.common.gc_pause import paused_gc

REPOSITORY_DIR = "repository"
FORMAT_VERSION = 1
CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = 256 << 10, 1 << 20, 4 << 20
PACK_TARGET = 16 << 20
MAX_HEADER_BYTES = 16 << 20
MAX_METADATA_BYTES = 256 << 20
SUMMARY_CACHE = "cache/snapshot-summaries"  # local only: never mirrored (see load_summaries)
SUMMARY_CACHE_CONTEXT = b"snapshot-summaries"  # its associated data: no snapshot or index opens as it
MAX_SUMMARY_CACHE_BYTES = 16 << 20
PACK_TEMP_PREFIX = ".pack-"
LOCK_WAIT_SECONDS = 30.0
_PLAIN, _ZSTD = b"\x00", b"\x01"
# How chunk ids are computed, recorded in the repository's config ("chunk_id"; absent = the first format's
# keyed BLAKE2b). New repositories use HMAC-SHA256 over the chunk's SHA-256: SHA-256 runs at twice BLAKE2b's
# speed where the CPU has SHA extensions, and the SHA-256 a file of one chunk needs for its checksum is its
# chunk's too, so the id costs one HMAC of 32 bytes instead of a second pass over the data.
CHUNK_ID_ALGORITHMS = ("blake2b", "hmac-sha256")
NEW_CHUNK_ID_ALGORITHM = "hmac-sha256"
_NONCE = 12
_TAG = 16  # AES-GCM's authentication tag, after the ciphertext
DEFAULT_ZSTD_LEVEL = 2
ZSTD_LEVELS = range(1, 20)


class RepositoryError(ArchiveError):
    """The repository cannot be used as it is; the message says which file and why."""


class BlobRef(NamedTuple):
    """Where a chunk is stored. A named tuple, immutable like the frozen dataclass it was, and built in
    a third of the time: an index of thousands of chunks makes one per entry on every run."""

    pack: str
    offset: int
    length: int
    raw_length: int


def derive_master(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


class Keys:
    """Encryption and chunk-id keys derived from the backup key; None secret = an unencrypted repository.
    `master` (the scrypt result for this secret and salt, from the key cache) spares deriving it again."""

    def __init__(self, secret: str | None, salt: bytes, master: bytes | None = None, chunk_id_algorithm: str = "blake2b"):
        self.encrypted = bool(secret)
        self.chunk_id_algorithm = chunk_id_algorithm
        self.master = b""
        if secret:
            master = master or derive_master(secret, salt)
            self.master = master
            self.aead = AESGCM(hashlib.blake2b(b"encryption", key=master, digest_size=32).digest())
            self.id_key = hashlib.blake2b(b"chunk-id", key=master, digest_size=32).digest()
            self.check = hashlib.blake2b(b"key-check", key=master, digest_size=32).hexdigest()
        else:
            self.aead = None
            self.id_key = b""
            self.check = ""

    def chunk_id(self, data) -> str:
        if self.chunk_id_algorithm == "hmac-sha256":
            return hmac.new(self.id_key, hashlib.sha256(data).digest(), "sha256").hexdigest()
        return hashlib.blake2b(data, key=self.id_key, digest_size=32).hexdigest()

    def chunk_id_from_sha256(self, sha256_digest: bytes) -> str | None:
        """The id of a chunk whose SHA-256 (32 raw bytes) is known, without reading it again; None when
        this repository's ids are not derived from the SHA-256 (the first format's BLAKE2b)."""
        if self.chunk_id_algorithm == "hmac-sha256":
            return hmac.new(self.id_key, sha256_digest, "sha256").hexdigest()
        return None

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        if self.aead is None:
            return plaintext
        nonce = os.urandom(_NONCE)
        return nonce + self.aead.encrypt(nonce, plaintext, context)

    def seal_large(self, plaintext: bytes, context: bytes) -> bytes | bytearray:
        """As seal, written straight into the sealed buffer (a bytearray) where the library can: no second copy of
        a large plaintext."""
        encrypt_into = getattr(self.aead, "encrypt_into", None)  # absent from older cryptography releases
        if encrypt_into is None:
            return self.seal(plaintext, context)
        nonce = os.urandom(_NONCE)
        sealed = bytearray(_NONCE + len(plaintext) + _TAG)
        sealed[:_NONCE] = nonce
        encrypt_into(nonce, plaintext, context, memoryview(sealed)[_NONCE:])
        return sealed

    def open(self, sealed: bytes, context: bytes, what: str) -> bytes:
        if self.aead is None:
            return sealed
        try:
            return self.aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context)
        except (InvalidTag, ValueError):
            raise RepositoryError(f"{what} failed authentication: altered, corrupt or sealed with another key") from None


KEY_CACHE_ENV = "BACKUP_KEY_CACHE_DIR"
_CACHE_VERSION = 1
_CACHE_LIMIT = 4096


def default_key_cache_dir() -> Path:
    """BACKUP_KEY_CACHE_DIR, else DAGSTER_HOME/backup-key-cache, else the user's cache folder: private to
    this machine and user, never under backups/ (so never mirrored to the object store)."""
    if os.environ.get(KEY_CACHE_ENV):
        return Path(os.environ[KEY_CACHE_ENV]).expanduser()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).expanduser() / "backup-key-cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trading-maintenance" / "backup-key-cache"


class KeyCache:
    """The scrypt result of a repository's secret, kept in a 0600 file of a 0700 folder outside the
    backups folder, named by the repository (its salt and key check) and holding a keyed check of the
    secret (HMAC-SHA256 under the derived key), so a repeat run skips scrypt.

    It is used only when the folder and file belong to this user and nobody else can read or write
    them, the check of the secret given matches, and the key it holds matches the repository's key
    check; anything else (missing, foreign, corrupt, another secret) falls back to scrypt, so a wrong
    secret is refused as before. It holds what decrypts the repository: as private as the secret.
    """

    def __init__(self, folder: Path, backups_dir: Path):
        folder, backups = Path(os.path.realpath(folder)), Path(os.path.realpath(backups_dir))
        self.folder = None if folder == backups or backups in folder.parents else folder

    @staticmethod
    def _name(salt: bytes, check: str) -> str:
        return hashlib.blake2b(salt + check.encode(), digest_size=20, person=b"tm-key-cache").hexdigest()

    @staticmethod
    def _secret_check(master: bytes, secret: str) -> str:
        return hmac.new(master, b"key-cache-secret-check\0" + secret.encode("utf-8"), hashlib.sha256).hexdigest()

    def _private(self, st: os.stat_result, kind: int) -> bool:
        return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o077)

    def load(self, secret: str, salt: bytes, check: str) -> bytes | None:
        if self.folder is None:
            return None
        path = self.folder / self._name(salt, check)
        try:
            if not self._private(os.lstat(self.folder), stat.S_IFDIR):
                return None
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, "rb") as handle:
                if not self._private(os.fstat(handle.fileno()), stat.S_IFREG):
                    return None
                data = handle.read(_CACHE_LIMIT + 1)
            if len(data) > _CACHE_LIMIT:
                return None
            document = json.loads(data)
            master = bytes.fromhex(document["master"])
            if document["version"] != _CACHE_VERSION or len(master) != 32:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(self._secret_check(master, secret), str(document.get("secret_check"))):
            return None
        if not hmac.compare_digest(hashlib.blake2b(b"key-check", key=master, digest_size=32).hexdigest(), check):
            return None
        return master

    def store(self, secret: str, salt: bytes, check: str, master: bytes) -> None:
        """Best effort: a folder that cannot be made private or written only means scrypt next time."""
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self._private(os.lstat(self.folder), stat.S_IFDIR):
                return
            path = self.folder / self._name(salt, check)
            temp = self.folder / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial"
            document = {"version": _CACHE_VERSION, "master": master.hex(), "secret_check": self._secret_check(master, secret)}
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with open(fd, "wb") as handle:
                    handle.write(json.dumps(document).encode())
                os.replace(temp, path)
            except OSError:
                temp.unlink(missing_ok=True)
                raise
        except OSError:
            return


def encode_chunk(keys: Keys, data: bytes, compressor: zstandard.ZstdCompressor, chunk_id: str | None = None) -> tuple[str, bytes]:
    """(chunk id, stored bytes): compressed when that helps, then sealed with the id as associated data.
    `chunk_id`, when the caller computed it already (keys.chunk_id_from_sha256), is not computed again."""
    chunk_id = chunk_id or keys.chunk_id(data)
    packed = compressor.compress(data)
    body = _ZSTD + packed if len(packed) < len(data) else _PLAIN + data
    return chunk_id, keys.seal(body, chunk_id.encode())


def decode_chunk(keys: Keys, chunk_id: str, stored: bytes, raw_length: int) -> bytes:
    body = keys.open(stored, chunk_id.encode(), f"chunk {chunk_id[:16]}")
    if body[:1] == _ZSTD:
        try:
            # zstandard ignores max_output_size when the frame states its size: a frame announcing more
            # than the index declares is refused before anything is allocated (-1: unstated, then bounded)
            if zstandard.frame_content_size(body[1:]) > raw_length:
                raise RepositoryError(f"chunk {chunk_id[:16]} announces more bytes than its index entry: refused")
            data = zstandard.ZstdDecompressor().decompress(body[1:], max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise RepositoryError(f"chunk {chunk_id[:16]} does not decompress: {exc}") from None
    elif body[:1] == _PLAIN:
        data = body[1:]
    else:
        raise RepositoryError(f"chunk {chunk_id[:16]} has an unknown encoding")
    if len(data) != raw_length or not hmac.compare_digest(keys.chunk_id(data), chunk_id):
        raise RepositoryError(f"chunk {chunk_id[:16]} does not match its id: the repository was altered or corrupted")
    return data


_HEX_ID = re.compile(r"[0-9a-f]{64}")


def _is_hex_id(name: str) -> bool:
    return type(name) is str and _HEX_ID.fullmatch(name) is not None


class Repository:
    """One repository folder; open with `Repository.open_or_create(backups_dir, secret)`."""

    def __init__(self, root: Path, keys: Keys, config: dict):
        self.root = root
        self.keys = keys
        self.config = config
        self.zstd_level = config.get("zstd_level", DEFAULT_ZSTD_LEVEL)  # of chunks written from now on

    # ----------------------------------------------------------------- opening and locking

    @classmethod
    def open_or_create(cls, backups_dir: str | Path, secret: str | None, create: bool = True,
                       key_cache: str | Path | None = None) -> Repository:
        """`key_cache`: the folder of the key cache (default: default_key_cache_dir()); the cache is not
        used when it lies inside backups_dir."""
        root = Path(backups_dir) / REPOSITORY_DIR
        cache = KeyCache(Path(key_cache) if key_cache is not None else default_key_cache_dir(), Path(backups_dir))
        config_path = root / "config.json"
        if not config_path.exists():
            if not create:
                raise RepositoryError(f"no backup repository in {root}")
            for sub in ("data", "index", "snapshots", "tmp"):
                (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            salt = os.urandom(16)
            keys = Keys(secret, salt, chunk_id_algorithm=NEW_CHUNK_ID_ALGORITHM)
            config = {"version": FORMAT_VERSION, "encrypted": keys.encrypted, "salt": salt.hex(), "key_check": keys.check,
                      "chunk_id": NEW_CHUNK_ID_ALGORITHM,
                      "chunker": {"algorithm": "fastcdc", "min": CHUNK_MIN, "avg": CHUNK_AVG, "max": CHUNK_MAX}}
            _write_file(config_path, json.dumps(config, indent=1).encode())
            if keys.encrypted:
                cache.store(secret, salt, keys.check, keys.master)
            return cls(root, keys, config)
        try:
            config = json.loads(_read_bounded(config_path, 1 << 16))
            salt = bytes.fromhex(config["salt"])
            version, encrypted, check = config["version"], config["encrypted"], config["key_check"]
            chunk_id_algorithm = config.get("chunk_id", "blake2b")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RepositoryError(f"{config_path}: not a valid repository configuration") from None
        if chunk_id_algorithm not in CHUNK_ID_ALGORITHMS:
            raise RepositoryError(f"{config_path}: field 'chunk_id' must be one of {', '.join(CHUNK_ID_ALGORITHMS)}")
        level = config.get("zstd_level", DEFAULT_ZSTD_LEVEL)
        if type(level) is not int or level not in ZSTD_LEVELS:
            raise RepositoryError(f"{config_path}: field 'zstd_level' must be a whole number from 1 to 19")
        if version != FORMAT_VERSION:
            raise RepositoryError(f"{config_path}: field 'version' is {version!r}; this program reads version {FORMAT_VERSION}")
        if encrypted and not secret:
            raise RepositoryError("the backup repository is encrypted: set BACKUP_ENCRYPTION_KEY (or backup.encryption_key)")
        cached = cache.load(secret, salt, str(check)) if encrypted else None
        keys = Keys(secret if encrypted else None, salt, cached, chunk_id_algorithm)
        if encrypted and not hmac.compare_digest(keys.check, str(check)):
            raise RepositoryError("wrong encryption key: the repository was created with a different BACKUP_ENCRYPTION_KEY")
        if encrypted and cached is None:
            cache.store(secret, salt, keys.check, keys.master)
        return cls(root, keys, config)

    @contextmanager
    def lock(self, exclusive: bool = True, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        """Exclusive for writers (backup, forget/prune, repair); shared for readers. Temporaries of a
        writer that died are removed once the exclusive lock is held."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RepositoryError(f"the backup repository {self.root} is locked by another backup or prune "
                                              f"(waited {wait:.0f} s)") from None
                    time.sleep(0.2)
            if exclusive:
                remove_dead_temporaries(self.root / "tmp", (PACK_TEMP_PREFIX, WORK_PREFIX))
            yield
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- packs

    def pack_path(self, pack_id: str) -> Path:
        return self.root / "data" / pack_id[:2] / pack_id

    def pack_ids(self) -> set[str]:
        found = set()
        data = self.root / "data"
        for sub in os.scandir(data) if data.is_dir() else ():
            if sub.is_dir(follow_symlinks=False) and len(sub.name) == 2:
                found.update(e.name for e in os.scandir(sub.path) if _is_hex_id(e.name) and e.name.startswith(sub.name))
        return found

    def publish_pack(self, temp: Path, pack_id: str, sync_folder: bool = True) -> Path:
        """A finished pack (already fsynced under its temporary name) given its content address; returns
        its folder, which a caller publishing many packs fsyncs once (sync_folder=False) before indexing them."""
        final = self.pack_path(pack_id)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(temp, final)
        if sync_folder:
            fsync_dir(final.parent)
        return final.parent

    def read_pack_header(self, pack_id: str) -> list[tuple[str, BlobRef]]:
        path = self.pack_path(pack_id)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < 4:
                    raise RepositoryError(f"pack {pack_id[:16]} is truncated")
                handle.seek(size - 4)
                (length,) = struct.unpack(">I", handle.read(4))
                if length > min(MAX_HEADER_BYTES, size - 4):
                    raise RepositoryError(f"pack {pack_id[:16]} has a header length beyond the file: truncated or corrupt")
                handle.seek(size - 4 - length)
                sealed = handle.read(length)
        except FileNotFoundError:
            raise RepositoryError(f"pack {pack_id[:16]} is missing") from None
        header = _json(self.keys.open(sealed, b"pack-header", f"pack {pack_id[:16]} header"),
                       f"pack {pack_id[:16]} header")
        entries = []
        limit = size - 4 - length
        for item in header if isinstance(header, list) else [None]:
            if not (isinstance(item, list) and len(item) == 4 and isinstance(item[0], str) and _is_hex_id(item[0])
                    and all(type(v) is int and 0 <= v for v in item[1:]) and item[1] + item[2] <= limit
                    and item[3] <= CHUNK_MAX):
                raise RepositoryError(f"pack {pack_id[:16]} header lists an invalid entry")
            entries.append((item[0], BlobRef(pack_id, item[1], item[2], item[3])))
        return entries

    def read_chunk(self, chunk_id: str, ref: BlobRef, handle=None) -> bytes:
        if handle is None:
            with open(self.pack_path(ref.pack), "rb") as own:
                return self.read_chunk(chunk_id, ref, own)
        return decode_chunk(self.keys, chunk_id, self.read_stored(chunk_id, ref, handle), ref.raw_length)

    def read_stored(self, chunk_id: str, ref: BlobRef, handle) -> bytes:
        """A chunk's bytes as stored (sealed, compressed), not yet checked: decode_chunk checks them."""
        handle.seek(ref.offset)
        stored = handle.read(ref.length)
        if len(stored) != ref.length:
            raise RepositoryError(f"pack {ref.pack[:16]} is truncated: chunk {chunk_id[:16]} cut short")
        return stored

    # ----------------------------------------------------------------- index

    def index_files(self) -> list[str]:
        folder = self.root / "index"
        return sorted(e.name for e in os.scandir(folder) if _is_hex_id(e.name)) if folder.is_dir() else []

    def read_index_file(self, name: str) -> dict[str, list[list]]:
        return self.open_index(name, _read_bounded(self.root / "index" / name, MAX_METADATA_BYTES))

    def open_index(self, name: str, sealed: bytes) -> dict[str, list[list]]:
        """An index file's pack map, from its stored bytes (here or a remote copy's), checked against its name."""
        if not hmac.compare_digest(hashlib.sha256(sealed).hexdigest(), name):
            raise RepositoryError(f"index {name[:16]} does not match its name: altered or corrupt")
        document = _json(self.keys.open(sealed, b"index", f"index {name[:16]}"), f"index {name[:16]}")
        packs = document.get("packs") if isinstance(document, dict) else None
        if not isinstance(packs, dict) or not all(_is_hex_id(p) and isinstance(v, list) for p, v in packs.items()):
            raise RepositoryError(f"index {name[:16]}: field 'packs' is not a map of pack ids to chunk lists")
        return packs

    def load_index(self) -> tuple[dict[str, BlobRef], dict[str, list[str]]]:
        """(chunk id -> where it is, index file -> its packs) over every index file."""
        with paused_gc():
            return self._load_index()

    def _load_index(self) -> tuple[dict[str, BlobRef], dict[str, list[str]]]:
        chunks: dict[str, BlobRef] = {}
        files: dict[str, list[str]] = {}
        for name in self.index_files():
            packs = self.read_index_file(name)
            files[name] = list(packs)
            for pack_id, entries in packs.items():
                refs = _index_entries(pack_id, entries, f"index {name[:16]} lists an invalid entry for pack {pack_id[:16]}")
                if chunks.keys().isdisjoint(refs):
                    chunks.update(refs)
                else:  # a chunk stored twice (two backups raced, or a re-indexed pack): the first one listed is used
                    for chunk_id, ref in refs.items():
                        chunks.setdefault(chunk_id, ref)
        return chunks, files

    def write_index(self, packs: dict[str, list[tuple[str, BlobRef]]]) -> str | None:
        if not packs:
            return None
        name, sealed = self.seal_index({p: [[cid, r.offset, r.length, r.raw_length] for cid, r in entries]
                                        for p, entries in packs.items()})
        _write_file(self.root / "index" / name, sealed)
        return name

    def seal_index(self, packs: dict[str, list[list]]) -> tuple[str, bytes]:
        """(name, stored bytes) of an index file listing `packs` (pack id -> [[chunk id, offset, length, raw length]])."""
        sealed = self.keys.seal(_compact_json({"packs": packs}), b"index")
        return hashlib.sha256(sealed).hexdigest(), sealed

    # ----------------------------------------------------------------- snapshots

    def snapshot_ids(self) -> list[str]:
        folder = self.root / "snapshots"
        return sorted(e.name for e in os.scandir(folder) if _is_hex_id(e.name)) if folder.is_dir() else []

    def write_snapshot(self, manifest: dict) -> str:
        """Sealed as JSON that begins with a summary (backup id, time, files, logical and new bytes), so a
        listing reads the summary without decoding every member; the members come last, one per line.
        A member given as an object with `text` (its JSON, taken from the parent) and `size` is written as
        that text, not encoded again; one with `lines` (a folder's, taken from the parent) and `size` as those lines."""
        members = manifest.get("members") or []
        logical = 0
        lines = []
        for member in members:
            if type(member) is dict:
                logical += member.get("size", 0)
                lines.append(_compact_json(member).decode())
            else:
                logical += member.size
                block = getattr(member, "lines", None)  # a folder's lines taken over whole (a StoredBlock)
                if block is None:
                    lines.append(member.text)
                else:
                    lines += block
        summary = {"backup_id": manifest.get("backup_id"), "created_at": manifest.get("created_at"), "files": len(lines),
                   "logical_bytes": logical, "new_bytes": (manifest.get("repository") or {}).get("new_bytes", 0)}
        head = _compact_json({"summary": summary, **{k: v for k, v in manifest.items() if k not in ("summary", "members")}})
        # the head and the end joined with the members' lines in one pass, encoded, then sealed in place: each copy
        # of a snapshot of thousands of members is ~1.4 MB of fresh memory (~0.75 ms of page faults on a VM)
        opening = head[:-1].decode() + ',"members":[\n'
        if lines:
            lines[0] = opening + lines[0]
            lines[-1] += "\n]}"
        else:
            lines = [opening + "\n]}"]
        sealed = self.keys.seal_large(",\n".join(lines).encode(), b"snapshot")
        name = hashlib.sha256(sealed).hexdigest()
        _write_file(self.root / "snapshots" / name, sealed)
        if self.keys.encrypted:  # the next listing need not read it for its summary
            self.store_summaries({**self.load_summaries(), name: summary})
        return name

    def read_snapshot(self, name: str) -> dict:
        return self.open_snapshot(name, _read_bounded(self.root / "snapshots" / name, MAX_METADATA_BYTES))

    def read_snapshot_plaintext(self, name: str) -> bytes:
        """A snapshot's bytes, checked against its name and authenticated, not yet decoded (see
        snapshot_summary and snapshot_manifest)."""
        return self.open_snapshot_plaintext(name, _read_bounded(self.root / "snapshots" / name, MAX_METADATA_BYTES))

    def open_snapshot_plaintext(self, name: str, sealed: bytes) -> bytes:
        if not hmac.compare_digest(hashlib.sha256(sealed).hexdigest(), name):
            raise RepositoryError(f"snapshot {name[:16]} does not match its name: altered or corrupt")
        return self.keys.open(sealed, b"snapshot", f"snapshot {name[:16]}")

    def open_snapshot(self, name: str, sealed: bytes) -> dict:
        """A snapshot's manifest, from its stored bytes (here or a remote copy's), checked against its name."""
        return snapshot_manifest(self.open_snapshot_plaintext(name, sealed), name)

    # ----------------------------------------------------------------- snapshot summaries

    def load_summaries(self) -> dict[str, dict]:
        """Snapshot name -> the summary it begins with, as earlier listings read it from the authenticated
        snapshot (snapshots are named by their content, so a name's summary never changes). Sealed with the
        key, so only a holder of the key could have written it; {} when the repository is not encrypted (then
        nothing could tell a planted file from ours) or the file is missing, torn or foreign. Each summary is
        still checked as one read from a snapshot."""
        if not self.keys.encrypted:
            return {}
        try:
            sealed = _read_bounded(self.root / SUMMARY_CACHE, MAX_SUMMARY_CACHE_BYTES)
            document = json.loads(self.keys.open(sealed, SUMMARY_CACHE_CONTEXT, "snapshot summaries"))
        except (RepositoryError, OSError, ValueError):
            return {}
        summaries = document.get("summaries") if isinstance(document, dict) and document.get("version") == 1 else None
        return summaries if isinstance(summaries, dict) else {}

    def store_summaries(self, summaries: dict[str, dict]) -> None:
        """Best effort and not fsynced: a file lost or torn by a crash fails authentication and is rebuilt from
        the snapshots by the next listing. Written in a locked work folder of tmp/ (a dead writer's is removed
        by the next run), then renamed into place."""
        if not self.keys.encrypted:
            return
        sealed = self.keys.seal(_compact_json({"version": 1, "summaries": summaries}), SUMMARY_CACHE_CONTEXT)
        if len(sealed) > MAX_SUMMARY_CACHE_BYTES:
            return
        target = self.root / SUMMARY_CACHE
        try:
            target.parent.mkdir(exist_ok=True, mode=0o700)
            with owned_temp_dir(self.root / "tmp", WORK_PREFIX) as work:
                temp = work / target.name
                temp.write_bytes(sealed)
                os.replace(temp, target)
        except OSError:
            return

    def remove_file(self, folder: str, name: str) -> None:
        path = self.root / folder / name
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)


_new_blob_ref = partial(tuple.__new__, BlobRef)  # BlobRef from a 4-tuple, without the named tuple's Python __new__


def _index_entries(pack_id: str, entries: list, problem: str) -> dict[str, BlobRef]:
    """One pack's index entries ([chunk id, offset, length, raw length] each), checked as a whole: every entry a
    list of four, ids of 64 lowercase hex digits, offsets and lengths non-negative integers (not booleans), raw
    lengths within CHUNK_MAX; otherwise RepositoryError(problem). Checked column by column with builtins (one
    pass of C per check instead of a dozen Python operations per entry).
    An id listed twice keeps its first entry."""
    if not entries:
        return {}
    if set(map(type, entries)) != {list} or set(map(len, entries)) != {4}:
        raise RepositoryError(problem)
    ids, offsets, lengths, raws = zip(*entries)
    numbers = offsets + lengths + raws
    if set(map(type, numbers)) != {int} or min(numbers) < 0 or max(raws) > CHUNK_MAX:
        raise RepositoryError(problem)
    if set(map(type, ids)) != {str} or set(map(len, ids)) != {64}:
        raise RepositoryError(problem)
    joined = "".join(ids)
    try:  # the round trip gives back exactly 64 lowercase hex digits per id: no uppercase, whitespace or other
        if bytes.fromhex(joined).hex() != joined:
            raise RepositoryError(problem)
    except ValueError:
        raise RepositoryError(problem) from None
    refs = dict(zip(ids, map(_new_blob_ref, zip(repeat(pack_id), offsets, lengths, raws))))
    if len(refs) < len(ids):  # an id repeated within the pack: its first entry, as every reader takes it
        refs = {}
        for chunk_id, ref in zip(ids, map(_new_blob_ref, zip(repeat(pack_id), offsets, lengths, raws))):
            refs.setdefault(chunk_id, ref)
    return refs


class ParentManifest(dict):
    """A snapshot's manifest with `member_texts`: each member's JSON text as stored (parent_members.split_members),
    the members then left out of the manifest; None when the manifest holds its members decoded."""

    __slots__ = ("member_texts",)


_SUMMARY_PREFIX = b'{"summary":'
_SUMMARY_LIMIT = 4096


def snapshot_manifest(plaintext: bytes, name: str) -> dict:
    manifest = _json(plaintext, f"snapshot {name[:16]}")
    if not isinstance(manifest, dict):
        raise RepositoryError(f"snapshot {name[:16]} is not a manifest")
    return manifest


def snapshot_summary(plaintext: bytes) -> dict | None:
    """The summary a snapshot begins with: {backup_id, created_at, files, logical_bytes, new_bytes}, its
    counts checked as non-negative integers (the caller checks the id and time); None when the snapshot
    has none (written before summaries) or it is malformed: then the whole manifest is decoded instead."""
    if not plaintext.startswith(_SUMMARY_PREFIX):
        return None
    head = plaintext[:_SUMMARY_LIMIT].decode("utf-8", errors="replace")
    try:
        summary, _ = json.JSONDecoder().raw_decode(head, len(_SUMMARY_PREFIX))
    except ValueError:
        return None
    return summary if summary_ok(summary) else None


def summary_ok(summary) -> bool:
    """A summary's counts are non-negative integers (its id and time are checked by manifest_identity)."""
    return isinstance(summary, dict) and all(type(summary.get(k)) is int and summary[k] >= 0
                                             for k in ("files", "logical_bytes", "new_bytes"))


def _compact_json(document) -> bytes:
    """Documents this module builds from plain values (no cycles by construction), so the encoder's cycle
    bookkeeping per container, ~20 % of encoding a snapshot of thousands of members, is left out."""
    return json.dumps(document, separators=(",", ":"), default=str, check_circular=False).encode()


def _json(data: bytes, what: str):
    """Decoded by orjson: twice json's speed on an index or a snapshot of thousands of entries, and stricter
    (UTF-8 only, no NaN, integers within 64 bits), which only refuses what this module never writes."""
    try:
        return orjson.loads(data)
    except ValueError:
        raise RepositoryError(f"{what} is not valid JSON: corrupt") from None


def _read_bounded(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb", buffering=0) as handle:
            # asked for its size (+1, so a file grown past the limit meanwhile is still refused), not the limit:
            # a read of 256 MiB allocates that much first, ~1 ms for a snapshot of 1.4 MB
            data = _read_upto(handle, min(os.fstat(handle.fileno()).st_size, limit) + 1, limit + 1)
    except FileNotFoundError:
        raise RepositoryError(f"{path.name[:16]} is missing from the repository") from None
    if len(data) > limit:
        raise RepositoryError(f"{path} is larger than {limit} bytes: refused")
    return data


def _read_upto(handle, first: int, most: int) -> bytes:
    """Up to `most` bytes of an unbuffered handle, `first` asked for at once; then on until its end, however
    short the kernel's reads or however the file grew since it was measured."""
    data = handle.read(first)
    if len(data) >= most:
        return data
    pieces = [data]
    total = len(data)
    while total < most:
        piece = handle.read(min(1 << 20, most - total))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    return data if len(pieces) == 1 else b"".join(pieces)


def _write_file(path: Path, data: bytes) -> None:
    """Written under a temporary name, fsynced, then renamed: a crash never leaves half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)
