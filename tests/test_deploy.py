"""deploy/ holds together as written (issue #13, point 6).

The Kubernetes manifests are built the way ``kubectl apply -k`` builds them
(``kubectl kustomize``), compose.yaml is read as compose reads it, and the
relations that broke before are checked: Redis ``maxmemory`` below its
container's memory limit with ``noeviction`` (else Redis is OOM-killed instead
of refusing writes), the ingress listening where its published port points and
with a webhook secret, probes on ports the containers declare, and every
Secret, ConfigMap and ``DISPATCHER_*`` setting referenced actually existing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaigns.settings import setting_names

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = {"k": 1000, "kb": 1000, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
K8S_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


def redis_bytes(value: str) -> int:
    """redis.conf memory units (``1gb`` = 1024**3, ``1g`` = 10**9)."""
    match = re.fullmatch(r"([0-9]+)([a-z]*)", value.lower())
    assert match, value
    return int(match.group(1)) * UNITS.get(match.group(2), 1)


def k8s_bytes(value: str) -> int:
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", value)
    assert match, value
    return int(match.group(1)) * K8S_UNITS.get(match.group(2), 1)


def compose_bytes(value: str) -> int:
    """Docker memory units: b, k, m, g, all binary (``1g`` = 1024**3)."""
    match = re.fullmatch(r"([0-9]+)([bkmg]?)", value.lower())
    assert match, value
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def redis_conf(text: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            settings[words[0]] = " ".join(words[1:])
    return settings


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet"):
            for c in m["spec"]["template"]["spec"]["containers"]:
                yield f"{m['kind']}/{m['metadata']['name']}/{c['name']}", c


def test_redis_maxmemory_is_below_its_container_limit_with_noeviction(
    manifests: list[dict[str, Any]],
) -> None:
    conf = redis_conf(find(manifests, "ConfigMap", "campaigns-redis-config")["data"]["redis.conf"])
    assert conf["maxmemory-policy"] == "noeviction"
    maxmemory = redis_bytes(conf["maxmemory"])
    redis = find(manifests, "StatefulSet", "campaigns-redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    limit = k8s_bytes(container["resources"]["limits"]["memory"])
    # Room for the AOF rewrite's fork and buffers: at most 80% of the limit.
    assert 0 < maxmemory <= 0.8 * limit
    # The config the container reads is this ConfigMap's redis.conf.
    assert "/etc/redis/redis.conf" in container["args"]
    mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/redis"]]["configMap"]["name"] == "campaigns-redis-config"


def test_probes_and_services_point_at_declared_ports(manifests: list[dict[str, Any]]) -> None:
    for where, container in containers(manifests):
        declared = {p["containerPort"] for p in container.get("ports", [])}
        declared |= {p["name"] for p in container.get("ports", []) if "name" in p}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.get(probe)
            if spec is None:
                continue
            for kind in ("httpGet", "tcpSocket", "grpc"):
                if kind in spec:
                    assert spec[kind]["port"] in declared, f"{where} {probe} port"
    pods = {
        m["metadata"]["name"]: m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")
    }
    for service in (m for m in manifests if m["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            p
            for p in pods.values()
            if selector.items() <= p["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service/{service['metadata']['name']} selects no pod"
        ports = {
            value
            for p in targets
            for c in p["spec"]["template"]["spec"]["containers"]
            for port in c.get("ports", [])
            for value in (port["containerPort"], port.get("name"))
        }
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports


def test_every_secret_and_configmap_referenced_exists(manifests: list[dict[str, Any]]) -> None:
    example = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    secrets = {example["metadata"]["name"]: set(example["stringData"])}
    configmaps = {
        m["metadata"]["name"]: set(m["data"]) for m in manifests if m["kind"] == "ConfigMap"
    }
    for where, container in containers(manifests):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, where
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, where
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                assert key in secrets.get(name, set()), f"{where}: secret {name}/{key}"
            if "configMapKeyRef" in ref:
                name, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                assert key in configmaps.get(name, set()), f"{where}: configmap {name}/{key}"


def test_every_dispatcher_setting_in_deploy_is_one_the_code_reads(
    manifests: list[dict[str, Any]],
) -> None:
    """A misspelt setting is refused at start: deploy/ must not ship one."""
    known = set(setting_names())
    used: set[str] = set()
    for m in manifests:
        if m["kind"] == "ConfigMap":
            used |= {k for k in m.get("data", {}) if k.startswith("DISPATCHER_")}
    for _, container in containers(manifests):
        used |= {e["name"] for e in container.get("env", []) if e["name"].startswith("DISPATCHER_")}
    example = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    used |= {k for k in example["stringData"] if k.startswith("DISPATCHER_")}
    for path in (DEPLOY / "compose.yaml", DEPLOY / "systemd" / "campaigns-worker.service"):
        used |= set(re.findall(r"\bDISPATCHER_[A-Z_]+[A-Z]\b", path.read_text()))
    assert used and used <= known, used - known


def test_compose_ingress_is_reachable_and_signed_and_redis_is_bounded() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]

    ingress = services["ingress"]
    command = ingress["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in ingress["ports"])
    assert "DISPATCHER_WEBHOOK_SECRET" in ingress["environment"]
    # Only the ingress gets the secret: the workers do not need it.
    assert "DISPATCHER_WEBHOOK_SECRET" not in services["worker"]["environment"]

    sandbox = services["sandbox"]["command"]
    assert sandbox[sandbox.index("--host") + 1] == "0.0.0.0"

    redis = services["redis"]
    conf = redis_conf((DEPLOY / "redis.conf").read_text())
    assert conf["maxmemory-policy"] == "noeviction"
    assert redis_bytes(conf["maxmemory"]) <= 0.8 * compose_bytes(redis["mem_limit"])
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
