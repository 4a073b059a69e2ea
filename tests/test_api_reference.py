"""docs/api.md cannot drift from the code: its tables list every ErrorCode exactly once, and
every status and code the error table (xfer/web/errors.py) answers with, as it answers."""

from __future__ import annotations

import re
from pathlib import Path

from xfer.errors import ErrorCode
from xfer.web.errors import ANSWERS, HTTP_CODES, INTERNAL, SERVICE_FAILED, STATUS_OF_CODE, Answer

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
ROW = re.compile(r"^\| (?:(\d{3}|\dxx) \| )?`([a-z_]+)` \|", re.MULTILINE)


def section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def rows(title: str) -> list[tuple[str, str]]:
    return ROW.findall(section(title))


def test_the_page_lists_every_code_once() -> None:
    listed = [code for _, code in rows("Error replies") + rows("Job error codes")]
    assert sorted(listed) == sorted(code.value for code in ErrorCode)


def answered() -> set[tuple[str, str]]:
    """(status, code) of every answer the error table gives with a code of its own."""
    answers = [entry for entry in ANSWERS.values() if isinstance(entry, Answer)]
    answers += SERVICE_FAILED.values()
    pairs = {(str(answer.status), str(answer.code)) for answer in answers
             if answer.code is not None}
    pairs |= {(str(status), str(code)) for code, status in STATUS_OF_CODE.items()}
    pairs |= {(str(status), str(code)) for status, code in HTTP_CODES.items()}
    return pairs | {(str(INTERNAL.status), str(INTERNAL.code))}


def test_the_page_says_what_status_each_reply_code_gets() -> None:
    documented = set(rows("Error replies"))
    assert answered() - documented == set()
    # and no row contradicts the table (a code it answers with one status only)
    statuses = {code: status for status, code in answered()}
    assert [row for row in documented if row[1] in statuses and statuses[row[1]] != row[0]] == []
