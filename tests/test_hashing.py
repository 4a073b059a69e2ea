"""Rolling whole-object hashes over any chunking and any arrival order equal hashlib's."""
import asyncio
import hashlib
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.engine.hashing import InOrderHasher


async def hash_in_random_order(data: bytes, cuts: list[int], with_sha512: bool, seed: int):
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    pieces = [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]
    random.Random(seed).shuffle(pieces)
    hasher = InOrderHasher(len(data), max(1, len(data)), with_sha512)
    task = asyncio.ensure_future(hasher.run())
    for offset, piece in pieces:
        hasher.offer(offset, piece)
        await asyncio.sleep(0)
    return await task


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=30), st.booleans(),
       st.integers(0, 1000))
def test_rolling_hashes_equal_hashlib(data, cuts, with_sha512, seed):
    digests = asyncio.run(hash_in_random_order(data, cuts, with_sha512, seed))
    assert digests.md5 == hashlib.md5(data).hexdigest()
    if with_sha512:
        assert digests.sha512 == hashlib.sha512(data).hexdigest()
    else:
        assert digests.sha512 is None
