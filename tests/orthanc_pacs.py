"""A real PACS for the tests: Orthanc (Debian package ``orthanc``) started on free loopback ports with a
temporary configuration and storage, stopped at the end. Its REST API is read with urllib here, in the
tests only (Lightbox itself has no HTTP client).

Orthanc 1.10 cannot be told which address to listen on, so it runs with ``tests/fixtures/loopback_bind.c``
preloaded (wildcard binds become loopback binds), and ``listening_addresses`` checks the kernel's socket
table: every socket the process listens on is 127.0.0.1 or ::1.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orthanc_binary() -> str:
    exe = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    if not exe:
        pytest.skip("Orthanc is not installed (`make setup` installs the Debian package 'orthanc' when run as "
                    "root; otherwise: sudo apt-get install orthanc)")
    return exe


def loopback_shim(workdir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the loopback-only bind shim for Orthanc (`make setup` installs gcc)")
    out = workdir / "libloopback_bind.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(FIXTURES / "loopback_bind.c"), "-ldl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build the loopback-only bind shim: {r.stderr.strip()[:300]}")
    return out


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(words))
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.add((addr, int(hexport, 16)))
    return out


class Orthanc:
    def __init__(self, workdir: Path, modalities: dict[str, dict], aet: str = "ORTHANCTEST"):
        self.workdir = Path(workdir)
        self.aet = aet
        self.modalities = modalities
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.user, self.password = "lightbox-test", secrets.token_hex(12)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "orthanc.log"

    def config(self) -> dict:
        return {
            "Name": "LightboxTestPACS",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "HttpThreadsCount": 4,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowFindWorklist": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": self.modalities,
            "DicomScuTimeout": 15,
            "DicomAssociationCloseDelay": 0,  # close C-MOVE's outgoing association at once
            "StableAge": 1,
            "SaveJobs": False,
            "OverwriteInstances": True,
            "StorageCompression": False,
            "ConcurrentJobs": 2,
        }

    def start(self, timeout: float = 30.0) -> Orthanc:
        exe = orthanc_binary()
        shim = loopback_shim(self.workdir)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        env = dict(os.environ, LD_PRELOAD=str(shim))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([exe, "--verbose", str(cfg)], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.workdir, start_new_session=True)
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                self.rest("GET", "/system")
                ports = {p for _a, p in listening_addresses(self.proc.pid)}
                if self.dicom_port in ports:
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not start in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._log.close()

    # -- REST (tests only) -------------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: bytes | dict | None = None, raw: bool = False):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        tok = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {tok}")
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
        return out if raw else json.loads(out or b"null")

    def study_by_uid(self, study_uid: str) -> dict | None:
        ids = self.rest("POST", "/tools/lookup", study_uid.encode())
        for hit in ids:
            if hit.get("Type") == "Study":
                return self.rest("GET", f"/studies/{hit['ID']}")
        return None

    def instances_of_study(self, study_uid: str) -> list[dict]:
        st = self.study_by_uid(study_uid)
        return self.rest("GET", f"/studies/{st['ID']}/instances") if st else []

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.rest("GET", f"/instances/{orthanc_id}/file", raw=True)
