"""The process-wide bound on buffered bytes: never over its total, first come first served."""

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.engine.inflight import InflightBytes


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 100), st.lists(st.integers(1, 150), min_size=1, max_size=30),
       st.integers(0, 1000))
def test_held_bytes_never_exceed_the_total(total, sizes, seed):
    async def scenario():
        budget = InflightBytes(total)
        peak = 0
        rng = random.Random(seed)

        async def use(size):
            nonlocal peak
            taken = await budget.take(size)
            try:
                peak = max(peak, budget.held)
                assert budget.held <= total
                await asyncio.sleep(rng.random() / 1000)
            finally:
                budget.give_back(taken)

        async with asyncio.TaskGroup() as group:
            for size in sizes:
                group.create_task(use(size))
        assert budget.held == 0
        return peak

    assert asyncio.run(scenario()) <= total


def test_grants_are_first_come_first_served():
    async def scenario():
        budget = InflightBytes(10)
        order = []

        async def use(name, size, hold):
            taken = await budget.take(size)
            order.append(name)
            await asyncio.sleep(hold)
            budget.give_back(taken)

        async with asyncio.TaskGroup() as group:
            group.create_task(use("first", 6, 0.05))
            await asyncio.sleep(0.01)
            group.create_task(use("big", 10, 0))
            await asyncio.sleep(0.01)
            group.create_task(use("small", 1, 0))  # fits now, but waits behind "big"
        return order

    assert asyncio.run(scenario()) == ["first", "big", "small"]
