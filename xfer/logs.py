"""Structured JSON logs; the current job id and API request id ride on contextvars onto every
line about that job or request.

Tokens never reach a log line: credentials hide theirs in repr, and errors carry method, path,
status and transaction id, never headers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import TextIO

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job",
                                                                         default=None)
current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request",
                                                                             default=None)


class JobIdFilter(logging.Filter):
    """Stamps the job and request ids when the record is made (formatting may happen
    elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        record.request_id = current_request.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for stamp in ("job_id", "request_id"):
            value = getattr(record, stamp, None)
            if value:
                line[stamp] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def json_handler(stream: TextIO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobIdFilter())
    return handler


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.handlers[:] = [json_handler(sys.stderr)]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
