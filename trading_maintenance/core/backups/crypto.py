"""Streamed AES-256-GCM for backup archives (no whole-archive buffering, truncation detected).

Format (all integers big-endian):

    magic   b"TMBKENC1"                       8 bytes
    salt    random                            16 bytes  (scrypt salt for the key)
    prefix  random                            7 bytes   (nonce prefix)
    check   HMAC-SHA256(key, b"key-check")    32 bytes  (tells a wrong key from corruption)
    chunks  [u32 length][ciphertext+tag] ...

Each chunk of up to CHUNK bytes is sealed with AES-256-GCM under nonce = prefix || u32 counter ||
u8 last, with the header as associated data. The final chunk carries last=1, so a truncated file
(chunks missing at the end) fails authentication instead of decrypting to a shorter archive; a
changed byte anywhere fails the tag of its chunk. Plaintext is only released chunk by chunk after
its tag verified.

The key is derived from the configured secret (BACKUP_ENCRYPTION_KEY) with scrypt, so a passphrase
and a random 32-byte key both work; the secret itself is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TMBKENC1"
CHUNK = 1 << 20
_HEADER_LEN = len(MAGIC) + 16 + 7 + 32
_LEN = struct.Struct(">I")


class DecryptionError(ValueError):
    """The archive cannot be decrypted: wrong key, tampered bytes or truncated file."""


def derive_key(secret: str, salt: bytes) -> bytes:
    if not secret:
        raise ValueError("an empty encryption key cannot be used")
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


def is_encrypted_file(path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


class EncryptingWriter:
    """A write-only file object: bytes written are sealed chunk by chunk into `raw`."""

    def __init__(self, raw, secret: str):
        salt, prefix = os.urandom(16), os.urandom(7)
        key = derive_key(secret, salt)
        check = hmac.new(key, b"key-check", hashlib.sha256).digest()
        self._header = MAGIC + salt + prefix + check
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._raw = raw
        self._buf = bytearray()
        self._counter = 0
        self._closed = False
        raw.write(self._header)

    def _seal(self, data: bytes, last: bool) -> None:
        nonce = self._prefix + struct.pack(">IB", self._counter, 1 if last else 0)
        sealed = self._aead.encrypt(nonce, bytes(data), self._header)
        self._raw.write(_LEN.pack(len(sealed)))
        self._raw.write(sealed)
        self._counter += 1

    def write(self, data) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:  # keep at least one byte back: the last chunk is sealed on close
            self._seal(self._buf[:CHUNK], last=False)
            del self._buf[:CHUNK]
        return len(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        """Seal the final chunk (does not close `raw`)."""
        if not self._closed:
            self._seal(self._buf, last=True)
            self._buf = bytearray()
            self._closed = True
            self._raw.flush()


class DecryptingReader:
    """A read-only file object yielding the verified plaintext of an encrypted archive."""

    def __init__(self, raw, secret: str):
        header = raw.read(_HEADER_LEN)
        if len(header) < _HEADER_LEN or not header.startswith(MAGIC):
            raise DecryptionError("not an encrypted backup archive (bad header) or the file is truncated")
        salt = header[8:24]
        self._prefix = header[24:31]
        check = header[31:63]
        key = derive_key(secret, salt)
        if not hmac.compare_digest(check, hmac.new(key, b"key-check", hashlib.sha256).digest()):
            raise DecryptionError("wrong encryption key: the archive was encrypted with a different BACKUP_ENCRYPTION_KEY")
        self._header = header
        self._aead = AESGCM(key)
        self._raw = raw
        self._counter = 0
        self._buf = b""
        self._pos = 0
        self._done = False

    def _next_chunk(self) -> bytes:
        head = self._raw.read(4)
        if len(head) < 4:
            raise DecryptionError("encrypted archive is truncated (final chunk missing)")
        (length,) = _LEN.unpack(head)
        if length < 16 or length > CHUNK + 16:
            raise DecryptionError("encrypted archive is corrupt (bad chunk length)")
        sealed = self._raw.read(length)
        if len(sealed) < length:
            raise DecryptionError("encrypted archive is truncated (chunk cut short)")
        for last in (0, 1):
            nonce = self._prefix + struct.pack(">IB", self._counter, last)
            try:
                plain = self._aead.decrypt(nonce, sealed, self._header)
            except InvalidTag:
                continue
            self._counter += 1
            if last:
                self._done = True
                if self._raw.read(1):
                    raise DecryptionError("encrypted archive has trailing data after its final chunk")
            return plain
        raise DecryptionError(f"encrypted archive was altered: chunk {self._counter} failed authentication")

    def read(self, size: int = -1) -> bytes:
        out = []
        wanted = size if size is not None and size >= 0 else None
        got = 0
        while wanted is None or got < wanted:
            if self._pos >= len(self._buf):
                if self._done:
                    break
                self._buf, self._pos = self._next_chunk(), 0
                continue
            take = len(self._buf) - self._pos if wanted is None else min(wanted - got, len(self._buf) - self._pos)
            out.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            got += take
        return b"".join(out)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass
