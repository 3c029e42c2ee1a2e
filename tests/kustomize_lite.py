"""A small renderer of the kustomize features deploy/kubernetes uses, so its overlays can be
rendered and validated without network or a kustomize binary (tests/test_deploy.py checks it
against `kubectl kustomize` where that is installed).

Supported, as kustomize does them: ``resources`` (files and folders with a kustomization),
``configMapGenerator`` (``envs``, ``files``, ``literals``; ``behavior`` create, merge or
replace; a hash of the contents appended to the name and every reference to it renamed),
``images`` (``newName``, ``newTag``), ``patches`` (strategic-merge patch files: lists of
containers, env, volumes and volume mounts merged by their keys, other lists replaced) and
``namespace``. Anything else in a kustomization is refused, so the renderer cannot silently
differ from kustomize.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "configMapGenerator", "images", "patches", "namespace"}
#: list field -> the key its items are merged by (strategic merge)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _env_file(path: Path) -> dict[str, str]:
    data = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            data[key.strip()] = value
    return data


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod spec(s) of a workload."""
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif doc["kind"] == "Pod":
        yield spec


def _merge(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(target, dict) and isinstance(patch, dict):
        for key, value in patch.items():
            target[key] = _merge(target[key], value, key) if key in target else value
        return target
    if isinstance(target, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        by_key = {item[key]: item for item in target}
        for item in patch:
            if item[key] in by_key:
                _merge(by_key[item[key]], item)
            else:
                target.append(item)
        return target
    return patch


def _build(folder: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]], str | None]:
    (kustomization,) = _documents(folder / "kustomization.yaml")
    unknown = set(kustomization) - KNOWN
    assert not unknown, f"{folder}: kustomize_lite does not know {sorted(unknown)}"
    docs: list[dict[str, Any]] = []
    generated: dict[str, dict[str, str]] = {}
    namespace = None
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            sub_docs, sub_generated, sub_namespace = _build(path)
            docs += sub_docs
            generated.update(sub_generated)
            namespace = sub_namespace or namespace
        else:
            docs += _documents(path)
    for generator in kustomization.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env in generator.get("envs", []):
            data.update(_env_file(folder / env))
        for name in generator.get("files", []):
            data[Path(name).name] = (folder / name).read_text(encoding="utf-8")
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        behavior = generator.get("behavior", "create")
        name = generator["name"]
        if behavior == "create":
            assert name not in generated, f"{name} generated twice"
            generated[name] = data
        elif behavior == "merge":
            generated[name] = {**generated[name], **data}
        else:
            assert behavior == "replace", behavior
            assert name in generated, f"{name}: nothing to replace"
            generated[name] = data
    for image in kustomization.get("images", []):
        for doc in docs:
            for pod in pod_specs(doc):
                for container in pod.get("containers", []) + pod.get("initContainers", []):
                    name, _, tag = container["image"].partition(":")
                    if name == image["name"]:
                        name = image.get("newName", name)
                        tag = image.get("newTag", tag)
                        container["image"] = f"{name}:{tag}" if tag else name
    for patch_ref in kustomization.get("patches", []):
        assert set(patch_ref) == {"path"}, "only strategic-merge patch files"
        for patch in _documents(folder / patch_ref["path"]):
            targets = [
                d
                for d in docs
                if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]
            ]
            assert len(targets) == 1, f"patch {patch['kind']}/{patch['metadata']['name']}"
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
            _merge(targets[0], copy.deepcopy(body))
    namespace = kustomization.get("namespace", namespace)
    if namespace:
        for doc in docs:
            doc["metadata"]["namespace"] = namespace
    return docs, generated, namespace


def _suffix(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def render(folder: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl apply -k folder`` would apply."""
    docs, generated, namespace = _build(folder)
    names = {name: f"{name}-{_suffix(data)}" for name, data in generated.items()}
    maps = []
    for name, data in generated.items():
        metadata: dict[str, Any] = {"name": names[name]}
        if namespace:
            metadata["namespace"] = namespace
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    for doc in docs:
        for pod in pod_specs(doc):
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    ref = volume["configMap"]
                    ref["name"] = names.get(ref["name"], ref["name"])
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        ref = source["configMapRef"]
                        ref["name"] = names.get(ref["name"], ref["name"])
                for env in container.get("env", []):
                    ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                    if ref:
                        ref["name"] = names.get(ref["name"], ref["name"])
    return maps + docs


def without_hashes(docs: list[dict[str, Any]], generated: list[str]) -> list[dict[str, Any]]:
    """The documents with generated names' hash suffixes removed (kustomize's and ours
    differ), to compare two renderings."""
    text = json.dumps(docs, sort_keys=True)
    for name in generated:
        for found in {
            d["metadata"]["name"] for d in docs if d["metadata"]["name"].startswith(name + "-")
        }:
            text = text.replace(f'"{found}"', f'"{name}"')
    return sorted(json.loads(text), key=lambda d: (d["kind"], d["metadata"]["name"]))
