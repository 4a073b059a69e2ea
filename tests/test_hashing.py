"""The whole-object hasher: over any segments, any chunking and any failed attempts (whose
bytes may be garbage), its digests equal hashlib's over the object, and every chunk it is
given is released exactly once."""

import asyncio
import hashlib
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.engine.chunks import Chunk, chunk_ranges
from xfer.engine.hashing import SegmentFeed, hash_in_order


def cut(total: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < total}), total]
    return [(a, b - a) for a, b in itertools.pairwise(bounds)]


async def feed_segments(data: bytes, segments: list[tuple[int, int]], chunk_size: int,
                        failures: list[int], with_sha512: bool, seed: int):
    rng = random.Random(seed)
    released: list[int] = []
    feeds: asyncio.Queue = asyncio.Queue()
    hashing = asyncio.ensure_future(hash_in_order(feeds, with_sha512, chunk_size))

    def chunk(offset: int, piece: bytes) -> Chunk:
        return Chunk(offset, memoryview(piece), 1, on_free=lambda: released.append(offset))

    given_out = 0
    for index, (offset, length) in enumerate(segments):
        feed = SegmentFeed(offset, length)
        feeds.put_nowait(feed)
        for _ in range(failures[index % len(failures)] if failures else 0):
            # a failed attempt: some of its chunks, damaged, then its verdict
            for start, size in chunk_ranges(offset, length, chunk_size)[:rng.randint(0, 3)]:
                feed.put(chunk(start, bytes(size)))
                given_out += 1
                if rng.random() < 0.5:
                    await asyncio.sleep(0)  # let the hasher take some before the verdict
            feed.end_attempt(False)
        for start, size in chunk_ranges(offset, length, chunk_size):
            feed.put(chunk(start, data[start:start + size]))
            given_out += 1
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        feed.end_attempt(True)
    feeds.put_nowait(None)
    digests = await hashing
    return digests, len(released), given_out


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=8),
       st.integers(1, 700), st.lists(st.integers(0, 2), max_size=5), st.booleans(),
       st.integers(0, 1000))
def test_digests_equal_hashlib_whatever_the_chunking_and_failed_attempts(
        data, cuts, chunk_size, failures, with_sha512, seed):
    segments = cut(len(data), cuts)
    digests, released, given_out = asyncio.run(
        feed_segments(data, segments, chunk_size, failures, with_sha512, seed))
    assert digests.md5 == hashlib.md5(data).hexdigest()
    assert digests.sha512 == (hashlib.sha512(data).hexdigest() if with_sha512 else None)
    assert released == given_out  # every chunk released once, taken or dropped as stale


@given(st.integers(0, 10**6), st.integers(0, 10**5), st.integers(1, 10**5))
def test_chunk_ranges_cover_a_segment_exactly_once(offset, length, chunk_size):
    ranges = chunk_ranges(offset, length, chunk_size)
    assert sum(size for _, size in ranges) == length
    assert all(0 < size <= chunk_size for _, size in ranges)
    position = offset
    for start, size in ranges:
        assert start == position
        position += size
