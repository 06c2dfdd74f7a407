"""What the dispute services need to know of an evidence file already stored.

`portal.disputes.evidence` (the uploads: checks, storage in UPLOAD_DIR, serving) makes
these; `portal.disputes.services` records them as `DisputeFile` rows. Kept apart so that
the services do not depend on how files are checked or stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredEvidence:
    """An evidence file written to UPLOAD_DIR under `storage_name` (random, unique).

    `original_name`: the customer's file name, sanitized, at most 200 characters (shown,
    never used as a path); `content_type`: "application/pdf", "image/png" or "image/jpeg",
    as read from the content; `size_bytes` > 0; `sha256`: 64 lowercase hex digits.
    """

    storage_name: str
    original_name: str
    content_type: str
    size_bytes: int
    sha256: str
