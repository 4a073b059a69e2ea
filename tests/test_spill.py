"""When spilling is worth its CPU (engine/spill.py): the machine's idle share, read from a
stand-in for /proc/stat."""

from __future__ import annotations

from collections.abc import Callable

from xfer.engine.spill import CpuRoom, _proc_stat


def ticks(*samples: tuple[int, int]) -> Callable[[], tuple[int, int]]:
    """(idle, total) clock ticks since boot, one sample per call."""
    pending = list(samples)
    return lambda: pending.pop(0)


def test_room_is_idle_cpu_since_the_last_sample():
    room = CpuRoom(min_idle=0.25, period=0.0,
                   read_stat=ticks((0, 0), (60, 200), (70, 400), (170, 600)))
    assert room()  # one sample: no interval yet, so room (the copy just started)
    assert room()  # 60 of 200 ticks idle: 30%
    assert not room()  # 10 of 200: 5%, the CPU is what limits the copy
    assert room()  # 100 of 200 again


def test_samples_at_most_once_a_period():
    reads = []

    def read() -> tuple[int, int]:
        reads.append(1)
        return 0, 100 * len(reads)  # never idle

    room = CpuRoom(period=3600.0, read_stat=read)
    assert room() and room() and room()
    assert len(reads) == 1


def test_a_machine_without_proc_stat_always_has_room():
    def unreadable() -> tuple[int, int]:
        raise OSError("no /proc here")

    assert CpuRoom(period=0.0, read_stat=unreadable)()


def test_proc_stat_gives_the_idle_ticks_among_all():
    idle, total = _proc_stat()
    assert 0 <= idle < total
