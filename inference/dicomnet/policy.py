"""Who may open an association with the node.

Accepted: a calling AE title listed under ``callers`` or as a PACS, from that entry's host when it names one
(host names are resolved when the node starts), addressed to the node's own AE title. Everything else is
refused with the DICOM reason (calling / called AE title not recognised) and logged with the peer's address.
With nothing configured, nobody is accepted: a fresh node listens but trusts no one.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from inference.dicomnet.config import NodeConfig

log = logging.getLogger("lightbox.dicom")

# A-ASSOCIATE-RJ (result, source, diagnostic): rejected permanent, by the service user
REJECT_CALLING = (0x01, 0x01, 0x03)
REJECT_CALLED = (0x01, 0x01, 0x07)


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str
    reject: tuple[int, int, int] | None = None


def _norm_ip(s: str) -> str:
    try:
        ip = ipaddress.ip_address(str(s).split("%")[0])
    except ValueError:
        return str(s)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _resolve(host: str) -> set[str]:
    try:
        return {_norm_ip(ai[4][0]) for ai in socket.getaddrinfo(host, None)}
    except OSError as e:
        log.warning("host '%s' of an allowed caller or PACS does not resolve (%s): no association from it "
                    "is accepted", host, e)
        return set()


class AssociationPolicy:
    def __init__(self, cfg: NodeConfig):
        self.own_ae = cfg.ae_title.strip()
        self.rules: list[tuple[str, set[str] | None, str]] = []  # (AE title, allowed IPs or None = any, label)
        for ae, host, what in ([(c.ae_title, c.host, "caller") for c in cfg.callers]
                               + [(p.ae_title, p.host, f"PACS {p.name}") for p in cfg.pacs]):
            self.rules.append((ae.strip(), _resolve(host) if host else None, what))

    def check(self, calling_ae: str, called_ae: str, host: str) -> Decision:
        calling_ae, called_ae, ip = str(calling_ae or "").strip(), str(called_ae or "").strip(), _norm_ip(host)
        if called_ae != self.own_ae:
            return Decision(False, f"called AE title '{called_ae}' is not this node's ('{self.own_ae}')",
                            REJECT_CALLED)
        if not self.rules:
            return Decision(False, "no callers are configured (Settings ▸ DICOM node ▸ allowed callers)",
                            REJECT_CALLING)
        same_ae = [r for r in self.rules if r[0] == calling_ae]
        if not same_ae:
            return Decision(False, f"calling AE title '{calling_ae}' is not an allowed caller", REJECT_CALLING)
        for _ae, ips, what in same_ae:
            if ips is None or ip in ips:
                return Decision(True, f"allowed {what} '{calling_ae}'")
        return Decision(False, f"'{calling_ae}' is allowed only from {', '.join(sorted(set().union(*(r[1] or set() for r in same_ae))))}, "
                               f"not from {ip}", REJECT_CALLING)
