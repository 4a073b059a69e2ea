"""What an image's copy carries over from its source: the create body of the target image,
each property once (`propagated_body`), and the text Glance would refuse in it
(`glance_text_problem`, also checked on the API's request before a job is made)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from xfer.errors import ImageRejected
from xfer.proto.glance import Image

# Never carried over: what Glance computes or assigns itself, and where the source's bytes are.
NEVER_COPIED = frozenset({
    "id", "owner", "status", "locations", "direct_url", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "created_at", "updated_at", "file", "schema",
    "self", "stores"})
# Glance's reserved namespace: it refuses these on create (403), whatever `deny` says.
RESERVED_PREFIX = "os_glance_"
DEFAULT_ALLOW = ("*",)
DEFAULT_DENY = ("os_glance_*",)
# Visibilities a member may set on an image of its own; 'public' needs publicize_image (admin).
COPIED_VISIBILITIES = frozenset({"private", "shared", "community"})
_NO_EXTRA: Mapping[str, str] = {}
_FOUR_BYTE_UTF8 = re.compile("[\U00010000-\U0010ffff]")


def propagated_body(image: Image, *, allow: Sequence[str] = DEFAULT_ALLOW,
                    deny: Sequence[str] = DEFAULT_DENY, name: str | None = None,
                    extra: Mapping[str, str] = _NO_EXTRA, source_region: str) -> dict[str, Any]:
    """The create body of the copy of `image`, with its properties carried over once.

    Kept: the name (or `name`), disk and container format, min_disk, min_ram, tags, and every
    property (os_*, hw_*, custom) whose name matches a pattern of `allow` and none of `deny`
    (fnmatch, case-sensitive). `protected` is False (a copy must stay deletable by xfer until
    it verified). The visibility is kept when private, shared or community; a public source
    becomes a private copy: a member may not publicize an image (Glance answers 403), and a
    copy shared wider than asked would be worse than one shared less.
    Never kept: NEVER_COPIED and os_glance_* (Glance's reserved namespace, refused on create).
    Then the provenance, overriding inherited values: `source_region`, `source_image_id`; then
    `extra`, last.
    Glance refuses 4-byte UTF-8 (emoji) in names, tags and properties with a bare 400 after
    the job waited for it; here it is ImageRejected naming the field, before any request.
    """
    body: dict[str, Any] = {}
    if (name if name is not None else image.name) is not None:
        body["name"] = name if name is not None else image.name
    for field_name in ("disk_format", "container_format"):
        if getattr(image, field_name) is not None:
            body[field_name] = getattr(image, field_name)
    body.update(min_disk=image.min_disk, min_ram=image.min_ram, tags=list(image.tags),
                protected=False,
                visibility=image.visibility if image.visibility in COPIED_VISIBILITIES
                else "private")
    for key, value in image.properties.items():
        if (key not in NEVER_COPIED and key not in body and not key.startswith(RESERVED_PREFIX)
                and any(fnmatchcase(key, pattern) for pattern in allow)
                and not any(fnmatchcase(key, pattern) for pattern in deny)):
            body[key] = value
    body.update(source_region=source_region, source_image_id=image.id)
    body.update(extra)
    check_glance_text(body)
    return body


def glance_text_problem(value: str) -> str | None:
    """Why Glance would refuse this text (4-byte UTF-8), or None."""
    found = _FOUR_BYTE_UTF8.search(value)
    if found is None:
        return None
    return (f"holds {found.group()!r} (U+{ord(found.group()):X}), a character of 4 bytes in "
            f"UTF-8, which Glance refuses in names, tags and properties")


def check_glance_text(body: Mapping[str, Any]) -> None:
    """ImageRejected naming the first key, value or tag that Glance would refuse."""
    for key, value in body.items():
        texts = [("property name " + repr(key), key)]
        if isinstance(value, str):
            texts.append((repr(key), value))
        elif key == "tags":
            texts += [(f"tag {tag!r}", tag) for tag in value if isinstance(tag, str)]
        for what, text in texts:
            problem = glance_text_problem(text)
            if problem:
                raise ImageRejected(f"the copy's {what} {problem}")


