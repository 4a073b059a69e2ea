"""Whether the image Glance made active is the copy xfer verified.

With Glance's default `do_secure_hash = True`, Glance reads the added location back and
computes `checksum` (MD5) and `os_hash_value` (SHA-512) itself, so the active image must carry
the source's two. With `do_secure_hash = False`, Glance computes neither: its location import
(Glance 33, `glance/async_/flows/location_import.py` `_SetHashValues`) records the
`validation_data` it was given, which API 2.17 restricts to `os_hash_algo` and `os_hash_value`
(no `checksum`: the schema forbids other keys), and only the image's `size` is Glance's own,
read from the store when the location is added. Such an image turns active with `checksum`
None. xfer verified the MD5 itself while copying (against the source's checksum), so a
missing checksum is accepted when everything Glance did record agrees; a checksum Glance did
compute must be the source's. Such a copy can be copied on: its SHA-512 (and size) is then what
the next copy is verified against, and the MD5 Glance computes for it is not compared.
"""

from __future__ import annotations

from xfer.proto.glance import Image


def registration_problem(source: Image, target: Image) -> str | None:
    """Why the active `target` is not the verified copy of `source`, or None."""
    found = (f"the target image {target.id} became active with checksum {target.checksum}, "
             f"os_hash_value {target.os_hash_value} and size {target.size}")
    if target.os_hash_value != source.os_hash_value:
        return (f"{found}, not the source's os_hash_value {source.os_hash_value}")
    if target.size is not None and target.size != source.size:
        return f"{found}, not the source's size {source.size}"
    if None not in (target.checksum, source.checksum) and target.checksum != source.checksum:
        return f"{found}, not the source's checksum {source.checksum}"
    return None


def same_content(source: Image, candidate: Image) -> bool:
    """A candidate for deduplication holds the source's content: its SHA-512 (which Glance
    computed, or was given by a service with do_secure_hash = False) is the source's, and its
    MD5 is the source's or was never computed."""
    return (candidate.os_hash_value == source.os_hash_value
            and candidate.checksum in (None, source.checksum)
            and candidate.size in (None, source.size))
