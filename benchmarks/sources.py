"""The source objects every copier copies: random bytes in RegionOne, uploaded once a session.

    slo100    an SLO of 100 MiB segments
    slo1024   an SLO of 1 GiB segments; at least two of them (2 GiB), since an SLO of one
              segment is not kept as it is (xfer cuts it anew), and keeping 1 GiB segments
              within the memory bound is what this source is for
    plain     one plain object: what Glance stores an image of up to 5 GiB as
    file      a local file (not in Swift), for `xfer upload`

Each object is streamed to Swift as it is generated (a block at a time), so the harness never
holds a segment in memory, and hashed on the way: its MD5 and SHA-512 are what the copies
must arrive at.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.swift_http import Session, SwiftHttpError, object_path

MiB, GiB = 1 << 20, 1 << 30
BLOCK = 8 * MiB  # what is generated, hashed and sent at once


@dataclass(frozen=True)
class SourceKind:
    name: str
    segment_size: int | None  # None: a plain object
    min_segments: int = 1

    def size_for(self, requested: int) -> int:
        if self.segment_size is None:
            return requested
        return max(requested, self.min_segments * self.segment_size)

    def describe(self) -> str:
        if self.segment_size is None:
            return "plain object"
        return f"SLO of {self.segment_size // MiB} MiB segments"


SOURCE_KINDS = {kind.name: kind for kind in (
    SourceKind("slo100", 100 * MiB),
    SourceKind("slo1024", GiB, min_segments=2),
    SourceKind("plain", None),
)}


@dataclass(frozen=True)
class Source:
    kind: str
    container: str
    name: str
    size: int
    md5: str
    sha512: str
    segments: int  # 0 for a plain object

    @property
    def label(self) -> str:
        """How tables and the chart name the source: 'slo100 1 GiB'."""
        return f"{self.kind} {self.size / GiB:.3g} GiB"


class _Digests:
    """The whole object's MD5 and SHA-512, fed block after block in order."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha512 = hashlib.sha512()

    def update(self, block: bytes) -> None:
        self.md5.update(block)
        self.sha512.update(block)


def _random_blocks(rng: random.Random, length: int, digests: list[_Digests]) -> Iterator[bytes]:
    for offset in range(0, length, BLOCK):
        block = rng.randbytes(min(BLOCK, length - offset))
        for digest in digests:
            digest.update(block)
        yield block


def _put_streamed(session: Session, path: str, rng: random.Random, length: int,
                  whole: _Digests) -> str:
    """PUT `length` random bytes; returns their MD5 once Swift's ETag agrees with it."""
    own = _Digests()
    headers, _ = session.checked("PUT", path, (201,), body=_random_blocks(rng, length, [whole, own]),
                                 headers={"Content-Length": str(length)})
    etag = own.md5.hexdigest()
    if headers.get("etag", "").strip('"') != etag:
        raise SwiftHttpError(f"PUT {path}: Swift stored ETag {headers.get('etag')}, sent {etag}")
    return etag


def upload_source(session: Session, kind: SourceKind, container: str, name: str, size: int,
                  seed: int) -> Source:
    """Random bytes as `kind` (the segments of an SLO in `<container>_segments`)."""
    session.checked("PUT", f"/{container}", (201, 202))
    rng, whole = random.Random(seed), _Digests()
    if kind.segment_size is None:
        _put_streamed(session, object_path(container, name), rng, size, whole)
        return Source(kind.name, container, name, size, whole.md5.hexdigest(),
                      whole.sha512.hexdigest(), 0)
    segment_container = container + "_segments"
    session.checked("PUT", f"/{segment_container}", (201, 202))
    manifest = []
    for index, offset in enumerate(range(0, size, kind.segment_size)):
        length = min(kind.segment_size, size - offset)
        path = object_path(segment_container, f"{name}/{index:08d}")
        etag = _put_streamed(session, path, rng, length, whole)
        manifest.append({"path": path, "etag": etag, "size_bytes": length})
    session.checked("PUT", object_path(container, name) + "?multipart-manifest=put", (201,),
                    body=json.dumps(manifest).encode())
    return Source(kind.name, container, name, size, whole.md5.hexdigest(),
                  whole.sha512.hexdigest(), len(manifest))


def write_random_file(path: Path, size: int, seed: int, container: str) -> Source:
    """A local file of random bytes: the source of `xfer upload` into `container`."""
    rng, whole = random.Random(seed), _Digests()
    with path.open("wb") as file:
        for block in _random_blocks(rng, size, [whole]):
            file.write(block)
    return Source("file", container, path.name, size, whole.md5.hexdigest(),
                  whole.sha512.hexdigest(), 0)
