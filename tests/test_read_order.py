"""A copy's ranged reads at once (engine/fetch.LowestFirst): never more than its size, and
the lowest offset waiting goes next, so the chunk the oldest segment's PUT needs is read
before those of segments fetched ahead."""

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.engine.fetch import LowestFirst


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.lists(st.integers(0, 1000), min_size=1, max_size=40),
       st.integers(0, 1000))
def test_holders_never_exceed_the_size(size, keys, seed):
    async def scenario():
        slots = LowestFirst(size)
        holding = peak = 0
        rng = random.Random(seed)

        async def read(key):
            nonlocal holding, peak
            await slots.acquire(key)
            holding += 1
            peak = max(peak, holding)
            try:
                await asyncio.sleep(rng.random() / 1000)
            finally:
                holding -= 1
                slots.release()

        async with asyncio.TaskGroup() as group:
            for key in keys:
                group.create_task(read(key))
        assert slots.free == size  # every slot came back
        return peak

    assert asyncio.run(scenario()) == min(size, len(keys))


def test_the_lowest_key_waiting_goes_next_and_equal_keys_in_turn():
    async def scenario():
        slots = LowestFirst(1)
        order = []
        await slots.acquire(0)  # held: everyone below waits

        async def read(name, key):
            await slots.acquire(key)
            order.append(name)
            slots.release()

        async with asyncio.TaskGroup() as group:
            for name, key in [("c", 30), ("a", 10), ("b1", 20), ("b2", 20)]:
                group.create_task(read(name, key))
            await asyncio.sleep(0.01)  # all four wait
            slots.release()
        return order

    assert asyncio.run(scenario()) == ["a", "b1", "b2", "c"]


def test_a_waiter_cancelled_takes_no_slot_with_it():
    async def scenario():
        slots = LowestFirst(1)
        await slots.acquire(5)
        gone = asyncio.create_task(slots.acquire(1))  # would go next
        later = asyncio.create_task(slots.acquire(9))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        slots.release()
        await asyncio.wait_for(later, 1)  # the cancelled one's turn passed on
        slots.release()
        return slots.free

    assert asyncio.run(scenario()) == 1


def test_a_slot_granted_as_its_waiter_is_cancelled_is_passed_on():
    async def scenario():
        slots = LowestFirst(1)
        await slots.acquire(0)
        first = asyncio.create_task(slots.acquire(1))
        second = asyncio.create_task(slots.acquire(2))
        await asyncio.sleep(0.01)
        slots.release()  # grants `first`, which is cancelled before it runs
        first.cancel()
        await asyncio.wait_for(second, 1)
        slots.release()
        return slots.free

    assert asyncio.run(scenario()) == 1
