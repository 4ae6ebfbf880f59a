"""UIDs for what Lightbox creates (reports, SRs, overlays and their series), under one root per installation.

Lightbox's UID root
    Every installation makes its own root on first use: ``2.25.<a random 128-bit UUID as a decimal>`` (at
    most 44 characters). A UUID-derived OID under ``2.25`` is globally unique without registration (ITU-T
    X.667, DICOM PS3.5 §B.2), and the arc belongs to whoever generated the UUID: this installation, so it
    may allocate UIDs beneath it. A site with a registered root of its own sets ``uid_root`` in
    ``dicom.json`` instead (at most 40 characters, so a UID under it still fits 64).
UIDs under the root
    ``<root>.<microseconds since 1970><two random digits>``: strictly increasing within a process (two UIDs
    in one microsecond take consecutive numbers), and the random digits keep two Lightbox processes of one
    installation (the app and ``lightbox node``) apart. At most 44 + 1 + 18 = 63 characters.
Study Instance UID
    Never new: what Lightbox sends back joins the source study (same Study Instance UID, patient and
    accession from the source header); only series and instances are Lightbox's.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
import uuid

# how Lightbox names itself in what it writes (Implementation Class UID: a fixed UUID-derived OID)
IMPLEMENTATION_CLASS_UID = "2.25.291608803564372612054792157816344844510"
IMPLEMENTATION_VERSION = "LIGHTBOX1"
MANUFACTURER = "Lightbox"

_UID_RX = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_ROOT = 44


def is_uid(s: str) -> bool:
    """A syntactically valid UID: digits and dots, no leading zeros in a component, at most 64 characters."""
    return isinstance(s, str) and 0 < len(s) <= 64 and bool(_UID_RX.match(s))


def check_root(root: str) -> str:
    from inference.dicomnet.config import ConfigError

    r = str(root or "").strip().rstrip(".")
    if not is_uid(r) or len(r) > MAX_ROOT:
        raise ConfigError(f"'{root}' is not a usable UID root (digits and dots, no leading zeros, at most "
                          f"{MAX_ROOT} characters)")
    return r


def new_root() -> str:
    return f"2.25.{uuid.uuid4().int}"


class UidFactory:
    """``UidFactory(root)()`` -> a new UID under ``root``."""

    _lock = threading.Lock()
    _last = 0

    def __init__(self, root: str):
        self.root = check_root(root)

    def __call__(self) -> str:
        with UidFactory._lock:
            n = max(time.time_ns() // 1000, UidFactory._last // 100 + 1) * 100 + secrets.randbelow(100)
            UidFactory._last = n
        uid = f"{self.root}.{n}"
        assert is_uid(uid), uid
        return uid
