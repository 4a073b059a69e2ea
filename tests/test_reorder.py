"""In-order reassembly of chunks arriving in any order, with duplicates and partial retries."""
import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.engine.reorder import BeyondReach, OrderedAssembler


@st.composite
def chunked_deliveries(draw):
    data = draw(st.binary(min_size=0, max_size=2000))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=20)))
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    chunks = [(a, data[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    # retries: duplicates of whole chunks and of partial, overlapping ranges
    extra = []
    for _ in range(draw(st.integers(0, 10))):
        if not data:
            break
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start + 1, len(data)))
        extra.append((start, data[start:end]))
    deliveries = draw(st.permutations(chunks + extra))
    return data, deliveries


@settings(max_examples=300)
@given(chunked_deliveries())
def test_any_permutation_with_duplicates_yields_the_original(case):
    data, deliveries = case
    window = len(data) + 1
    assembler = OrderedAssembler(window)
    out = bytearray()
    for offset, chunk in deliveries:
        for ready in assembler.offer(offset, chunk):
            out += ready
        assert assembler.buffered <= window
        assert assembler.buffered <= len(data) - assembler.position
    assert bytes(out) == data
    assert assembler.buffered == 0


@settings(max_examples=200)
@given(chunked_deliveries(), st.integers(1, 500))
def test_buffered_bytes_never_exceed_a_small_window(case, window):
    """A producer that waits when refused never makes the assembler hold more than its window."""
    data, deliveries = case
    assembler = OrderedAssembler(window)
    out = bytearray()
    pending = list(deliveries)
    while pending:
        progressed = False
        for item in list(pending):
            offset, chunk = item
            # a well-behaved fetcher only asks for ranges inside the window
            if offset + len(chunk) > assembler.position + window:
                continue
            out += b"".join(assembler.offer(offset, chunk))
            assert assembler.buffered <= window
            pending.remove(item)
            progressed = True
        if not progressed:
            # refetch the next in-order piece, as a retrying fetcher would, within the window
            start = assembler.position
            out += b"".join(assembler.offer(start, data[start:start + window]))
    if len(out) < len(data):
        start = assembler.position
        while assembler.position < len(data):
            start = assembler.position
            out += b"".join(assembler.offer(start, data[start:start + window]))
    assert bytes(out) == data
    assert hashlib.md5(out).hexdigest() == hashlib.md5(data).hexdigest()


def test_chunk_beyond_window_is_refused():
    assembler = OrderedAssembler(10)
    with pytest.raises(BeyondReach):
        assembler.offer(5, b"123456")
    assert assembler.offer(0, b"12345") and assembler.position == 5
    assert assembler.offer(5, b"123456789") and assembler.position == 14
