"""engine/sources.py's map of a DLO onto its segment objects (reads go to the segments, not
the manifest): every byte range inside one segment finds that segment and its offset there."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from xfer.engine.sources import dlo_parts, part_holding
from xfer.proto import swift

segment_sizes = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=12)


def listing(sizes: list[int]) -> list[swift.Listed]:
    return [swift.Listed(f"seg-{index:03d}", size, f"{index:032x}")
            for index, size in enumerate(sizes)]


@given(sizes=segment_sizes, data=st.data())
def test_a_range_inside_one_segment_finds_it_and_no_other(sizes: list[int],
                                                            data: st.DataObject) -> None:
    parts = dlo_parts("c", listing(sizes))
    total = sum(sizes)
    assert [part.offset + part.size for part in parts][-1] == total
    if total == 0:
        return
    start = data.draw(st.integers(min_value=0, max_value=total - 1))
    length = data.draw(st.integers(min_value=1, max_value=total - start))
    found = part_holding(parts, start, length)
    holders = [part for part in parts
               if part.offset <= start and start + length <= part.offset + part.size]
    if holders:
        assert found is not None and found in holders and found.size > 0
        assert found.container == "c" and found.name.startswith("seg-")
    else:
        assert found is None  # across a boundary: the manifest is read instead


def test_offsets_follow_the_listing_order_and_skip_empty_segments() -> None:
    parts = dlo_parts("c", listing([3, 0, 4]))
    assert [(p.offset, p.size, p.name) for p in parts] == [
        (0, 3, "seg-000"), (3, 0, "seg-001"), (3, 4, "seg-002")]
    holding = part_holding(parts, 3, 2)
    assert holding is not None and holding.name == "seg-002"
    assert part_holding(parts, 2, 2) is None
