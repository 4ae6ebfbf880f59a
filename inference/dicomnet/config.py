"""The DICOM node's settings: one JSON file in the data folder (0600), read by the app and ``lightbox node``.

    {"ae_title": "LIGHTBOX", "port": 11112, "bind": "127.0.0.1", "autostart": false,
     "callers": [{"ae_title": "US_ROOM_2", "host": "10.1.2.3"}],
     "pacs": [{"name": "PACS", "ae_title": "ORTHANC", "host": "10.1.0.5", "port": 4242, "retrieve": "move"}],
     "fetch_priors": true, "priors_max": 3, "uid_root": "2.25.…"}

``callers``: who may send to the node (an empty host = any host). Every PACS in ``pacs`` may call too (it
delivers what a C-MOVE asks for), from its own host. The bind address is loopback until someone sets it:
a fresh install listens to no one else.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference import paths

FILE_NAME = "dicom.json"
DEFAULT_AE = "LIGHTBOX"
DEFAULT_PORT = 11112  # the registered non-privileged DICOM port


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


def check_ae_title(v: str, what: str = "AE title") -> str:
    """1-16 characters of the default repertoire without backslash or control characters; not only spaces."""
    s = str(v or "").strip()
    if not s:
        raise ConfigError(f"the {what} is empty")
    if len(s) > 16:
        raise ConfigError(f"the {what} '{s}' is longer than 16 characters")
    if "\\" in s or any(ord(c) < 32 or ord(c) > 126 for c in s):
        raise ConfigError(f"the {what} '{s}' may hold only printable ASCII characters and no backslash")
    return s


def check_port(v: Any, what: str = "port", allow_zero: bool = False) -> int:
    """1-65535 (0, "any free port", only for the node itself: tests and the bench)."""
    try:
        p = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"the {what} '{v}' is not a number") from None
    if allow_zero and p == 0:
        return 0
    if not 1 <= p <= 65535:
        raise ConfigError(f"the {what} {p} is outside 1-65535")
    return p


def check_host(v: str, what: str = "host", allow_empty: bool = False) -> str:
    s = str(v or "").strip()
    if not s:
        if allow_empty:
            return ""
        raise ConfigError(f"the {what} is empty")
    try:
        ipaddress.ip_address(s)
        return s
    except ValueError:
        pass
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?", s):
        raise ConfigError(f"the {what} '{s}' is neither an IP address nor a host name")
    return s


@dataclass
class Caller:
    """A modality or PACS allowed to open an association with the node."""
    ae_title: str
    host: str = ""  # "" = from any host

    def validated(self) -> Caller:
        return Caller(check_ae_title(self.ae_title, "calling AE title"), check_host(self.host, "caller's host", True))


@dataclass
class Peer:
    """A PACS (or any C-FIND/C-MOVE/C-GET/C-STORE SCP) Lightbox talks to."""
    name: str
    ae_title: str
    host: str
    port: int
    retrieve: str = "move"  # move: the PACS sends to Lightbox's node; get: on the same association

    def validated(self) -> Peer:
        name = str(self.name or "").strip() or str(self.ae_title).strip()
        if self.retrieve not in ("move", "get"):
            raise ConfigError(f"PACS {name}: retrieve is 'move' or 'get', not '{self.retrieve}'")
        return Peer(name, check_ae_title(self.ae_title, f"AE title of PACS {name}"),
                    check_host(self.host, f"host of PACS {name}"), check_port(self.port, f"port of PACS {name}"),
                    self.retrieve)

    def label(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


@dataclass
class NodeConfig:
    ae_title: str = DEFAULT_AE
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    autostart: bool = False  # start the node when the app starts
    callers: list[Caller] = field(default_factory=list)
    pacs: list[Peer] = field(default_factory=list)
    fetch_priors: bool = True  # opening a study fetches its patient's priors of the same modality
    priors_max: int = 3
    uid_root: str = ""  # this installation's root for the UIDs of what Lightbox creates (see uids)

    def validated(self) -> NodeConfig:
        from inference.dicomnet.uids import check_root

        names = [p.name for p in self.pacs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"two PACS are called {', '.join(sorted(dup))}")
        return NodeConfig(check_ae_title(self.ae_title, "node's AE title"), check_port(self.port, "node's port", True),
                          check_host(self.bind, "bind address"), bool(self.autostart),
                          [c.validated() for c in self.callers], [p.validated() for p in self.pacs],
                          bool(self.fetch_priors), max(0, min(int(self.priors_max), 50)),
                          check_root(self.uid_root) if self.uid_root else "")

    def peer(self, name_or_spec: str) -> Peer:
        """A PACS by its name (or AE title), or written out as ``AE@host:port``."""
        s = str(name_or_spec or "").strip()
        for p in self.pacs:
            if s in (p.name, p.ae_title):
                return p
        m = re.fullmatch(r"([^@]{1,16})@([^:]+):(\d+)", s)
        if m:
            return Peer(m.group(1), m.group(1), m.group(2), int(m.group(3))).validated()
        known = ", ".join(p.name for p in self.pacs) or "none configured"
        raise ConfigError(f"no PACS called '{s}' (known: {known}; or write AE@host:port)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeConfig:
        d = dict(d or {})
        base = cls()
        return cls(ae_title=d.get("ae_title", base.ae_title), port=d.get("port", base.port),
                   bind=d.get("bind", base.bind), autostart=bool(d.get("autostart", False)),
                   callers=[Caller(**{k: c.get(k, "") for k in ("ae_title", "host")}) for c in d.get("callers") or []],
                   pacs=[Peer(p.get("name", ""), p.get("ae_title", ""), p.get("host", ""), p.get("port", 0),
                              p.get("retrieve", "move")) for p in d.get("pacs") or []],
                   fetch_priors=bool(d.get("fetch_priors", True)), priors_max=int(d.get("priors_max", 3)),
                   uid_root=str(d.get("uid_root") or ""))


def config_path() -> Path:
    return paths.data_home() / FILE_NAME


def load(path: str | Path | None = None) -> NodeConfig:
    """The saved settings (defaults when there are none). An installation gets its UID root on first load.
    A damaged file is a ConfigError, never silently replaced."""
    from inference.dicomnet.uids import new_root

    p = Path(path) if path else config_path()
    if p.exists():
        try:
            cfg = NodeConfig.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (ValueError, TypeError, AttributeError) as e:
            raise ConfigError(f"{p} is not a valid DICOM settings file ({e}); fix or remove it") from None
    else:
        cfg = NodeConfig()
    if not cfg.uid_root:
        cfg.uid_root = new_root()
        save(cfg, p)
    return cfg.validated()


def save(cfg: NodeConfig, path: str | Path | None = None) -> Path:
    from inference.atomic import atomic_write_text  # mkstemp: the file is 0600

    p = Path(path) if path else config_path()
    cfg = cfg.validated()
    atomic_write_text(p, json.dumps(cfg.to_dict(), indent=2) + "\n")
    return p
