"""deploy/: the Kubernetes base and example overlay render (tests/kustomize_lite.py, checked
against `kubectl kustomize` where it is installed), validate against the Kubernetes schemas
(bundled with kubernetes-validate, offline), lint clean, and hold what a platform team relies
on: probes, limits, non-root in the image's group, read-only root, no service-account token,
known settings only, a NetworkPolicy, an Ingress that keeps /metrics in, a ServiceMonitor, a
migrations Job, the site policy from a generated ConfigMap, and no Secret in what is applied."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from builders import HASH_KEY
from kustomize_lite import pod_specs, render, without_hashes

from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBE / "overlays" / "example"
KUBERNETES_VERSION = "1.30.0"  # the oldest version still in support that hospitals run
SETTINGS = {f"PGX_CDS_{name.upper()}" for name in Settings.model_fields}
GENERATED = ["pgx-cds-settings", "pgx-cds-site"]
#: Kinds of a CRD (the Prometheus Operator's): checked here, not by the Kubernetes schemas
CUSTOM = {"ServiceMonitor"}
RENDERED = render(OVERLAY)


def _kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in RENDERED
        if d["kind"] == kind
        and (
            name is None
            or re.fullmatch(rf"{re.escape(name)}(-[0-9a-z]{{10}})?", d["metadata"]["name"])
        )
    ]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def _container(kind: str, name: str | None = None) -> dict[str, Any]:
    (pod,) = pod_specs(_kind(kind, name))
    (container,) = pod["containers"]
    return container


def _settings() -> dict[str, str]:
    return _kind("ConfigMap", "pgx-cds-settings")["data"]


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_the_rendered_overlay_is_valid_kubernetes(version: str):
    kinds = set()
    for document in RENDERED:
        kinds.add(document["kind"])
        if document["kind"] not in CUSTOM:
            kubernetes_validate.validate(document, version, strict=True)
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
        "ServiceMonitor",
        "Job",
        "CronJob",
        "ConfigMap",
    } <= kinds


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kustomize_lite_renders_the_overlay_as_kubectl_kustomize_does():
    real = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True
    ).stdout
    documents = [d for d in yaml.safe_load_all(real) if d]
    assert without_hashes(RENDERED, GENERATED) == without_hashes(documents, GENERATED)


def test_no_secret_is_applied_and_none_is_committed():
    """`apply -k` must never overwrite the site's Secret with a placeholder."""
    assert not [d for d in RENDERED if d["kind"] == "Secret"]
    assert not list(KUBE.rglob("secret*.yaml"))
    refs = {
        ref["name"]
        for d in RENDERED
        for pod in pod_specs(d)
        for c in pod["containers"]
        for ref in (
            [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e]
            + [s["secretRef"] for s in c.get("envFrom", []) if "secretRef" in s]
        )
    }
    refs |= {
        v["secret"]["secretName"]
        for d in RENDERED
        for pod in pod_specs(d)
        for v in pod.get("volumes", [])
        if "secret" in v
    }
    assert refs == {"pgx-cds", "pgx-cds-worklist-fhir-token"}  # both made by the site


def test_every_kustomization_file_lists_its_resources():
    for kustomization in KUBE.rglob("kustomization.yaml"):
        (k,) = [d for d in yaml.safe_load_all(kustomization.read_text()) if d]
        for resource in k.get("resources", []):
            assert (kustomization.parent / resource).exists(), (kustomization, resource)
        listed = {r for r in k.get("resources", []) if r.endswith(".yaml")}
        listed |= {p["path"] for p in k.get("patches", [])}
        on_disk = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk == listed, f"{kustomization}: files not in the kustomization"


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
    (pod,) = pod_specs(_kind("Deployment"))
    assert pod["automountServiceAccountToken"] is False
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    container = _container("Deployment")
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # /healthz on the hook port is answered by the worker's loop (gather.py), never by a
    # request thread: the liveness probe is independent of them
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    from cds_service.web import gather

    kubelet = (  # what the kubelet's HTTP probe sends
        b"GET /healthz HTTP/1.1\r\nHost: 10.1.2.3:8080\r\nUser-Agent: kube-probe/1.30\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    assert gather._is_healthz(kubelet)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # the only writable place is the /tmp emptyDir
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert [p for p, m in mounts.items() if not m.get("readOnly")] == ["/tmp"]
    # SIGTERM + preStop fit in the grace period (gunicorn needs at most 3 s after SIGTERM)
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause + 3 < pod["terminationGracePeriodSeconds"]
    assert container["image"] == "registry.hospital.example.org/pgx-pain-cds:0.2.0"


def test_every_pod_runs_in_the_images_group():
    """The Dockerfile's user is uid 10001 in group 0 (OpenShift's convention): the pods agree."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--uid 10001 --gid 0" in dockerfile and "USER 10001" in dockerfile
    workloads = [d for d in RENDERED if list(pod_specs(d))]
    assert {d["kind"] for d in workloads} == {"Deployment", "CronJob", "Job"}
    for workload in workloads:
        (pod,) = pod_specs(workload)
        context = pod["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (10001, 0, 0)


def test_the_site_policy_comes_from_a_generated_configmap_that_rolls_the_pods():
    site = _kind("ConfigMap", "pgx-cds-site")
    assert re.fullmatch(r"pgx-cds-site-[0-9a-z]{10}", site["metadata"]["name"])
    assert json.loads(site["data"]["site.json"])["silent"] is True  # the example: silent
    container = _container("Deployment")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGX_CDS_SITE_CONFIG"] == "/etc/pgx-cds/site.json"
    assert env["PGX_CDS_SITE_CODES"] == "/etc/pgx-cds/site-codes.json"
    (pod,) = pod_specs(_kind("Deployment"))
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/pgx-cds")
    assert volumes[mount["name"]]["configMap"]["name"] == site["metadata"]["name"]
    settings = _kind("ConfigMap", "pgx-cds-settings")["metadata"]["name"]
    assert container["envFrom"] == [{"configMapRef": {"name": settings}}]
    # a change of the site file changes the name the pods refer to: they roll
    changed = render_with(OVERLAY, "site.json", '{"silent": false}')
    assert _named(changed, "ConfigMap", "pgx-cds-site") != site["metadata"]["name"]


def render_with(overlay: Path, name: str, content: str) -> list[dict[str, Any]]:
    original = (overlay / name).read_text()
    try:
        (overlay / name).write_text(content)
        return render(overlay)
    finally:
        (overlay / name).write_text(original)


def _named(docs: list[dict[str, Any]], kind: str, prefix: str) -> str:
    (name,) = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)
    ]
    return name


def test_settings_are_real_settings_and_secrets_stay_out_of_the_configmap(monkeypatch):
    names = set(_settings())
    for kind in ("Deployment", "CronJob", "Job"):
        names |= {e["name"] for e in _container(kind).get("env", [])}
    (compose,) = [d for d in yaml.safe_load_all((ROOT / "deploy" / "compose.yaml").read_text())]
    names |= set(compose["services"]["pgx-cds"]["environment"])
    assert {n for n in names if n.startswith("PGX_CDS_") and n not in SETTINGS} == set()
    data = _settings()
    assert "PGX_CDS_DATABASE_PASSWORD" not in data and "PGX_CDS_HASH_KEY" not in data
    assert ":" not in data["PGX_CDS_DATABASE_URL"].split("@")[0].removeprefix(
        "postgresql+psycopg://"
    )
    env = {e["name"]: e for e in _container("Deployment")["env"]}
    assert env["PGX_CDS_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "pgx-cds"
    assert env["PGX_CDS_HASH_KEY_FILE"]["value"] == "/var/run/secrets/pgx-cds/hash-keys"
    # the example's settings start (the hash key is the Secret's: here a stand-in)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PGX_CDS_HASH_KEY", HASH_KEY)  # (the Secret's: a stand-in)
    assert Settings().trusted_issuers


def test_selectors_match_the_pods():
    labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind, name in (
        ("Service", "pgx-cds"),
        ("PodDisruptionBudget", None),
        ("NetworkPolicy", "pgx-cds"),
    ):
        spec = (_policy(name) if kind == "NetworkPolicy" else _kind(kind, name))["spec"]
        selector = spec.get("selector") or spec["podSelector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    assert _kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "pgx-cds"


def _policy(name: str) -> dict[str, Any]:
    (found,) = [
        d for d in RENDERED if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == name
    ]
    return found


def test_the_network_policy_lets_in_the_ingress_and_prometheus_only():
    policy = _policy("pgx-cds")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    sources = [
        (peer["namespaceSelector"]["matchLabels"], peer["podSelector"]["matchLabels"])
        for rule in policy["ingress"]
        for peer in rule["from"]
    ]
    assert [s[1]["app.kubernetes.io/name"] for s in sources] == ["ingress-nginx", "prometheus"]
    ports = [[p["port"] for p in rule["ports"]] for rule in policy["ingress"]]
    assert ports == [["http"], ["metrics"]]  # the ingress to the hooks, Prometheus to metrics
    container_ports = {p["name"]: p["containerPort"] for p in _container("Deployment")["ports"]}
    assert container_ports["metrics"] == int(_settings()["PGX_CDS_METRICS_PORT"])


def test_the_network_policy_lets_out_dns_the_database_and_the_ehr_only():
    egress = _policy("pgx-cds")["spec"]["egress"]
    ports = sorted((p["port"], p["protocol"]) for rule in egress for p in rule["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (5432, "TCP")]
    https = next(r for r in egress if r["ports"][0]["port"] == 443)
    assert https["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]  # the example's EHR network
    # the worklist and the migrations Job: no way in, only what they read
    worklist = _policy("pgx-cds-worklist")["spec"]
    assert "ingress" not in worklist and "Ingress" in worklist["policyTypes"]
    assert {p["port"] for r in worklist["egress"] for p in r["ports"]} == {53, 443}
    upgrade = _policy("pgx-cds-db-upgrade")["spec"]
    assert {p["port"] for r in upgrade["egress"] for p in r["ports"]} == {53, 5432}


def test_the_ingress_routes_the_cds_services_only():
    ingress = _kind("Ingress")["spec"]
    paths = [p for rule in ingress["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/cds-services", "Prefix")]
    assert {p["backend"]["service"]["name"] for p in paths} == {"pgx-cds"}
    assert ingress["tls"]
    public = _settings()["PGX_CDS_PUBLIC_URL"]
    assert public == f"https://{ingress['rules'][0]['host']}"


def test_the_service_monitor_scrapes_the_metrics_service():
    monitor = _kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    services = [
        d
        for d in RENDERED
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]
    (service,) = services
    assert service["metadata"]["name"] == "pgx-cds-metrics"  # not the Service the ingress uses
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    target = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert target["targetPort"] == "metrics"  # PGX_CDS_METRICS_PORT, not the hook port
    hooks = _kind("Service", "pgx-cds")["spec"]["ports"]
    assert [p["targetPort"] for p in hooks] == ["http"]  # the ingress's Service: no metrics


def test_the_migrations_job_upgrades_the_schema_for_sites_that_do_not_at_start(monkeypatch):
    assert _settings()["PGX_CDS_MIGRATE_ON_START"] == "false"
    job = _container("Job", "pgx-cds-db-upgrade")
    assert job["command"] == ["pgx-cds", "db", "upgrade"]
    assert job["image"] == _container("Deployment")["image"]
    assert job["envFrom"] == _container("Deployment")["envFrom"]
    env = {e["name"]: e for e in job["env"]}
    assert "secretKeyRef" in env["PGX_CDS_DATABASE_PASSWORD"]["valueFrom"]
    assert job["securityContext"]["readOnlyRootFilesystem"] is True
    from cds_service import cli

    seen = []
    monkeypatch.setattr(cli, "_db", lambda settings, action: seen.append(action) or 0)
    assert cli.main(job["command"][1:]) == 0 and seen == ["upgrade"]


def test_compose_runs_the_service_read_only_on_postgresql():
    (compose,) = [d for d in yaml.safe_load_all((ROOT / "deploy" / "compose.yaml").read_text())]
    service = compose["services"]["pgx-cds"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["environment"]["PGX_CDS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert service["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_images_are_fully_qualified():
    """podman does not guess a registry for a short name ('postgres:17' fails there)."""
    (compose,) = [d for d in yaml.safe_load_all((ROOT / "deploy" / "compose.yaml").read_text())]
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
    container = _container("CronJob")
    assert container["image"] == _container("Deployment")["image"]
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
    # the same settings and site files as the service
    assert container["envFrom"] == _container("Deployment")["envFrom"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    site = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/pgx-cds")
    assert volumes[site["name"]]["configMap"]["name"].startswith("pgx-cds-site-")
    command = container["command"]
    assert command[:2] == ["pgx-cds", "worklist"]

    def given(flag: str) -> str:
        return command[command.index(flag) + 1]

    # the server is one the site allows; its token a mounted secret file, not an argument
    assert given("--fhir-server") in _settings()["PGX_CDS_FHIR_SERVERS"].split(",")
    assert "--token" not in command
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(Path(given("--token-file")).parent)]["readOnly"] is True
    # it writes its lists to the worklist volume, and nowhere else but /tmp
    assert [p for p, m in mounts.items() if not m.get("readOnly")] == ["/worklist", "/tmp"]
    assert given("--html").startswith("/worklist/") and given("--csv").startswith("/worklist/")
    claim = volumes[mounts["/worklist"]["name"]]["persistentVolumeClaim"]["claimName"]
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
