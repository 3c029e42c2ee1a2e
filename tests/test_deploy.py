"""deploy/: the Kubernetes manifests validate against the Kubernetes schemas (bundled with
kubernetes-validate, offline), the YAML is lint-clean, and what hospital IT relies on is there:
probes, limits, non-root, read-only root, no service-account token, known settings only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = "1.30.0"  # the oldest version still in support that hospitals run
SETTINGS = {f"PGX_CDS_{name.upper()}" for name in Settings.model_fields}


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kind(kind: str) -> dict[str, Any]:
    (found,) = [d for p in MANIFESTS for d in _load(p) if d["kind"] == kind]
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_manifest_is_valid_kubernetes(path: Path, version: str):
    for document in _load(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_kustomization_lists_every_manifest():
    (kustomization,) = _load(KUBE / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_deploy_yaml_is_lint_clean():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", "deploy/.yamllint.yaml", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_deployment_is_locked_down_and_probed():
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # the only writable place is the /tmp emptyDir
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert [p for p, m in mounts.items() if not m.get("readOnly")] == ["/tmp"]
    # SIGTERM + preStop fit in the grace period (gunicorn needs at most 3 s after SIGTERM)
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause + 3 < pod["terminationGracePeriodSeconds"]


def test_settings_in_configmap_secret_and_compose_are_real_settings():
    names = set(_kind("ConfigMap")["data"]) | set(_kind("Secret")["stringData"])
    deployment_env = _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    names |= {e["name"] for e in deployment_env}
    (compose,) = _load(ROOT / "deploy" / "compose.yaml")
    names |= set(compose["services"]["pgx-cds"]["environment"])
    unknown = {n for n in names if n.startswith("PGX_CDS_") and n not in SETTINGS}
    assert unknown == set()
    assert {"PGX_CDS_DATABASE_URL", "PGX_CDS_TRUSTED_ISSUERS"} <= set(_kind("Secret")["stringData"])


def test_selectors_match_the_pods():
    labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = _kind(kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    assert _kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "pgx-cds"


def test_compose_runs_the_service_read_only_on_postgresql():
    (compose,) = _load(ROOT / "deploy" / "compose.yaml")
    service = compose["services"]["pgx-cds"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["environment"]["PGX_CDS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert service["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_images_are_fully_qualified():
    """podman does not guess a registry for a short name ('postgres:17' fails there)."""
    (compose,) = _load(ROOT / "deploy" / "compose.yaml")
    for name, service in compose["services"].items():
        registry = service["image"].split("/")[0]
        assert "." in registry or registry == "localhost", (name, service["image"])


def test_the_worklist_runs_nightly_as_locked_down_as_the_service(monkeypatch):
    cronjob = _kind("CronJob")
    spec = cronjob["spec"]
    minute, hour, *every_day = spec["schedule"].split()
    assert every_day == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert (
        container["image"]
        == _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= SETTINGS
    # the job's own deadline is the backstop: the run stops itself first
    assert job["activeDeadlineSeconds"] > float(env["PGX_CDS_WORKLIST_BUDGET"])
    command = container["command"]
    assert command[:2] == ["pgx-cds", "worklist"]

    def given(flag: str) -> str:
        return command[command.index(flag) + 1]

    # the server is one the site allows; its token a mounted secret file, not an argument
    assert given("--fhir-server") in _kind("ConfigMap")["data"]["PGX_CDS_FHIR_SERVERS"].split(",")
    assert "--token" not in command
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(Path(given("--token-file")).parent)]["readOnly"] is True
    # it writes its lists to the worklist volume, and nowhere else but /tmp
    assert [p for p, m in mounts.items() if not m.get("readOnly")] == ["/worklist", "/tmp"]
    assert given("--html").startswith("/worklist/") and given("--csv").startswith("/worklist/")
    claims = {v["name"]: v for v in pod["volumes"]}
    claim = claims[mounts["/worklist"]["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == _kind("PersistentVolumeClaim")["metadata"]["name"]
    # the command line is one pgx-cds accepts
    from cds_service import cli

    seen = []
    monkeypatch.setattr(
        "cds_service.worklist.command.worklist", lambda s, args, token: seen.append(args) or 0
    )
    monkeypatch.setattr(cli, "_token", lambda args: None)
    assert cli.main(command[1:]) == 0
    assert seen[0].html == Path("/worklist/worklist.html")
