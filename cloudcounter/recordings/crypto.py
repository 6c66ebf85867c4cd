"""Recordings and evidence at rest: AES-256-GCM per file, in chunks, so that a range of
a recording is read by decrypting only the chunks that hold it (seeking in a player).

File format (``.enc``)::

    header  "CCENC\\0\\1\\0" | key id (8) | salt (16) | chunk size (4, big-endian)
    chunk i len (4, big-endian) | nonce (12) | ciphertext (len) | GCM tag (16)

Chunk ``i`` sits at ``HEADER + i * (CHUNK + 32)``; only the last one may be shorter. Each
file has its own key, derived from the master key (``CLOUDCOUNTER_AT_REST_KEY``) and the
file's random salt with HKDF-SHA256. Each chunk is sealed with a fresh random nonce every
time it is written (a recording's tail chunk is rewritten as it grows, and the muxer
rewrites a few header bytes when it closes the file), and its additional data binds it to
the header, its index and its length, so chunks cannot be swapped, moved or cut short
without the tag failing. The key id tells a file sealed with another key apart from a
corrupt one. Writes land chunk by chunk, so a crash leaves a readable file up to the last
write (the same crash safety as plain recordings).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloudcounter.errors import CloudCounterError

MAGIC = b"CCENC\x00\x01\x00"
CHUNK = 64 * 1024
HEADER = len(MAGIC) + 8 + 16 + 4
OVERHEAD = 4 + 12 + 16
SUFFIX = ".enc"


class AtRestError(CloudCounterError):
    code = "at_rest_error"
    http_status = 500


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"cloudcounter at-rest key id\x00" + key).digest()[:8]


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                   info=b"cloudcounter at-rest v1").derive(key)
    return AESGCM(derived)


def is_encrypted(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _aad(header: bytes, index: int, length: int) -> bytes:
    return header + struct.pack(">QI", index, length)


class EncryptedWriter:
    """A seekable, write-only binary file that seals what is written (PyAV can mux into
    it; ``write_bytes`` for small files). Not thread-safe: one writer thread."""

    def __init__(self, path: Path, key: bytes, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self._chunk = chunk
        salt = os.urandom(16)
        self._header = MAGIC + key_id(key) + salt + struct.pack(">I", chunk)
        self._aead = _file_key(key, salt)
        self._f: BinaryIO = open(self.path, "w+b")
        self._f.write(self._header)
        self._pos = 0
        self._size = 0
        self._chunks: dict[int, bytearray] = {}  # plaintext of chunks being written
        self._dirty: set[int] = set()
        self.closed = False

    # the file-object interface PyAV uses
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("negative seek")
        self._pos = base + offset
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            index, at = divmod(self._pos, self._chunk)
            buf = self._load(index)
            if len(buf) < at:
                buf.extend(b"\0" * (at - len(buf)))
            n = min(self._chunk - at, len(view) - done)
            buf[at:at + n] = view[done:done + n]
            self._dirty.add(index)
            done += n
            self._pos += n
            self._size = max(self._size, self._pos)
        self._seal_dirty()
        return done

    def flush(self) -> None:
        self._seal_dirty()
        self._f.flush()

    def close(self) -> None:
        if self.closed:
            return
        self._seal_dirty()
        self._f.close()
        self.closed = True

    def __enter__(self) -> "EncryptedWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- chunks ----------------------------------------------------------------------
    def _load(self, index: int) -> bytearray:
        buf = self._chunks.get(index)
        if buf is not None:
            return buf
        buf = bytearray()
        if index * self._chunk < self._size:  # written before: read it back
            self._f.seek(HEADER + index * (self._chunk + OVERHEAD))
            buf = bytearray(_open_chunk(self._f, self._aead, self._header, index))
        self._chunks[index] = buf
        return buf

    def _seal_dirty(self) -> None:
        last = (self._size - 1) // self._chunk if self._size else 0
        for index in sorted(self._dirty):
            plain = bytes(self._chunks[index])
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, plain, _aad(self._header, index, len(plain)))
            self._f.seek(HEADER + index * (self._chunk + OVERHEAD))
            self._f.write(struct.pack(">I", len(plain)) + nonce + sealed)
            if len(plain) == self._chunk and index != last:
                del self._chunks[index]  # full and behind the tail: done with it
        self._dirty.clear()
        # keep at most the tail chunk's plaintext in memory
        for index in [i for i in self._chunks if i != last]:
            del self._chunks[index]


def _open_chunk(f: BinaryIO, aead: AESGCM, header: bytes, index: int) -> bytes:
    head = f.read(16)
    if len(head) < 16:
        raise AtRestError(f"encrypted file truncated at chunk {index}")
    (length,) = struct.unpack(">I", head[:4])
    sealed = f.read(length + 16)
    try:
        return aead.decrypt(head[4:16], sealed, _aad(header, index, length))
    except InvalidTag:
        raise AtRestError(f"chunk {index} of an encrypted file fails its integrity check "
                          "(corrupt or tampered)") from None


class EncryptedReader:
    """Random access to the plaintext of an encrypted file."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = Path(path)
        self._f: BinaryIO = open(self.path, "rb")
        header = self._f.read(HEADER)
        if len(header) < HEADER or header[:len(MAGIC)] != MAGIC:
            self._f.close()
            raise AtRestError(f"{self.path.name} is not an encrypted cloudcounter file")
        if header[8:16] != key_id(key):
            self._f.close()
            raise AtRestError(f"{self.path.name} was encrypted with another at-rest key",
                              code="at_rest_key_mismatch")
        self._header = header
        (self._chunk,) = struct.unpack(">I", header[32:36])
        self._aead = _file_key(key, header[16:32])
        stride = self._chunk + OVERHEAD
        body = os.fstat(self._f.fileno()).st_size - HEADER
        self.chunks = (body + stride - 1) // stride if body > 0 else 0
        if self.chunks:
            self._f.seek(HEADER + (self.chunks - 1) * stride)
            (last,) = struct.unpack(">I", self._f.read(4) or b"\0\0\0\0")
            self.size = (self.chunks - 1) * self._chunk + last
        else:
            self.size = 0

    def chunk(self, index: int) -> bytes:
        self._f.seek(HEADER + index * (self._chunk + OVERHEAD))
        return _open_chunk(self._f, self._aead, self._header, index)

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """The plaintext bytes ``start`` to ``end`` (exclusive), chunk by chunk."""
        end = min(end, self.size)
        pos = start
        while pos < end:
            index, at = divmod(pos, self._chunk)
            data = self.chunk(index)[at:at + (end - pos)]
            if not data:
                break
            yield data
            pos += len(data)

    def read_all(self) -> bytes:
        return b"".join(self.read_range(0, self.size))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "EncryptedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_encrypted(path: Path, data: bytes, key: bytes) -> None:
    """Write a small file sealed (evidence), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with EncryptedWriter(tmp, key) as w:
        w.write(data)
    os.replace(tmp, path)


def sha256_and_size(path: Path, key: bytes | None) -> tuple[str, int]:
    """SHA-256 and size of a file's plaintext (decrypting it when it is sealed)."""
    digest = hashlib.sha256()
    size = 0
    if key is not None and is_encrypted(path):
        with EncryptedReader(path, key) as r:
            for i in range(r.chunks):
                data = r.chunk(i)
                digest.update(data)
                size += len(data)
    else:
        with open(path, "rb") as f:
            while data := f.read(1 << 20):
                digest.update(data)
                size += len(data)
    return digest.hexdigest(), size
