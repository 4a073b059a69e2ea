"""Structured JSON logs; the current job id rides on a contextvar onto every line about a job.

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


class JobIdFilter(logging.Filter):
    """Stamps the job id when the record is made (formatting may happen elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
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
        job_id = getattr(record, "job_id", None)
        if job_id:
            line["job_id"] = job_id
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
