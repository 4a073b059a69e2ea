"""Server-sent events (text/event-stream) as xfer's GET /v1/jobs/{id}/events sends them, parsed
line by line with no IO: `progress` (the job) whenever it changes, then `end` {"reason"}.

Only what the format defines is read: `event:` and `data:` fields, a blank line ending an
event, comment lines (`: keep-alive`) ignored; `id:` and `retry:` are not used by xfer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str
    data: Any  # the JSON the `data:` lines carry


class EventParser:
    """Feed it the stream's bytes as they come (`feed_bytes`) or its lines (`feed`, without
    their line ending); an Event comes out when a blank line ends one."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []
        self._partial = b""  # the bytes of a line whose end has not come yet

    def feed_bytes(self, chunk: bytes) -> list[Event]:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        events = (self.feed(line.removesuffix(b"\r").decode()) for line in lines)
        return [event for event in events if event is not None]

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> Event | None:
        name, data = self._name, self._data
        self._name, self._data = "message", []
        if not data:
            return None
        return Event(name, json.loads("\n".join(data)))
