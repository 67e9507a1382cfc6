"""deploy/ holds together as written (issue #13, point 6; issue 17, item 3; issue 21, item 8).

The Kubernetes manifests are built the way ``kubectl apply -k`` builds them
(``kubectl kustomize``), compose.yaml is read as compose reads it, and the
relations that broke before are checked: Redis ``maxmemory`` below its
container's memory limit with ``noeviction`` (else Redis is OOM-killed instead
of refusing writes), the ingress listening where its published port points and
with a webhook secret, probes on ports the containers declare, and every
Secret, ConfigMap and ``DISPATCHER_*`` setting referenced actually existing.
Both run one Redis primary, two replicas and three sentinels, and every
dispatcher process finds Redis through the sentinels; the API has a Service,
each worker's metrics port is exposed, and systemd has the units it promises.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
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
    # The config the container reads is this ConfigMap's, through redis-start.sh.
    assert container["command"] == ["sh", "/etc/redis/redis-start.sh", "data"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REDIS_CONF_DIR"] == "/etc/redis"
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
    for path in (DEPLOY / "compose.yaml", *sorted((DEPLOY / "systemd").glob("*.service"))):
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

    conf = redis_conf((DEPLOY / "redis.conf").read_text())
    assert conf["maxmemory-policy"] == "noeviction"
    for name in ("redis-0", "redis-1", "redis-2"):
        redis = services[name]
        assert redis_bytes(conf["maxmemory"]) <= 0.8 * compose_bytes(redis["mem_limit"])
        assert ".:/usr/local/etc/redis:ro" in redis["volumes"]
        assert redis["environment"]["REDIS_CONF_DIR"] == "/usr/local/etc/redis"


# -- Redis primary, replicas and sentinels (issue 17, item 3) ---------------------------


def test_a_primary_cut_off_from_its_replicas_stops_taking_writes() -> None:
    """Every data node's config refuses writes without a replica (split brain)."""
    for name in ("redis.conf", "redis-replica.conf"):
        conf = redis_conf((DEPLOY / name).read_text())
        assert conf["min-replicas-to-write"] == "1", name
        assert conf["min-replicas-max-lag"] == "10", name
    sentinel = (DEPLOY / "sentinel.conf").read_text()
    monitor = re.search(r"^sentinel monitor campaigns __PRIMARY__ (\d+)$", sentinel, re.M)
    assert monitor and int(monitor.group(1)) == 2, "a quorum of two of the three sentinels"
    # Sentinel resolves names only if told so before it reads the monitor line.
    assert sentinel.index("resolve-hostnames yes") < monitor.start()


def test_k8s_runs_three_data_nodes_and_three_sentinels_from_one_script(
    manifests: list[dict[str, Any]],
) -> None:
    config = find(manifests, "ConfigMap", "campaigns-redis-config")["data"]
    assert set(config) == {"redis.conf", "redis-replica.conf", "sentinel.conf", "redis-start.sh"}
    for name, role, port in (
        ("campaigns-redis", "data", 6379),
        ("campaigns-sentinel", "sentinel", 26379),
    ):
        nodes = find(manifests, "StatefulSet", name)
        assert nodes["spec"]["replicas"] == 3, name
        assert nodes["spec"]["serviceName"] == name
        (container,) = nodes["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("redis:")
        assert container["command"] == ["sh", "/etc/redis/redis-start.sh", role]
        assert {p["containerPort"] for p in container["ports"]} == {port}
        service = find(manifests, "Service", name)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SELF"] == f"$(POD_NAME).{name}"
        assert env["REDIS_INITIAL_PRIMARY"] == "campaigns-redis-0.campaigns-redis 6379"
        sentinels = [f"campaigns-sentinel-{i}.campaigns-sentinel:26379" for i in range(3)]
        assert env["REDIS_SENTINELS"].split() == sentinels


def test_every_dispatcher_process_finds_redis_through_the_sentinels(
    manifests: list[dict[str, Any]],
) -> None:
    settings = find(manifests, "ConfigMap", "campaigns-dispatcher")["data"]
    sentinels = settings["DISPATCHER_REDIS_SENTINELS"].split(",")
    assert sentinels == [f"campaigns-sentinel-{i}.campaigns-sentinel:26379" for i in range(3)]
    assert settings["DISPATCHER_REDIS_SENTINEL_MASTER"] == "campaigns"
    assert "DISPATCHER_REDIS_URL" not in settings
    for deployment in ("campaigns-worker", "campaigns-api", "campaigns-webhooks"):
        pod = find(manifests, "Deployment", deployment)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert {"configMapRef": {"name": "campaigns-dispatcher"}} in container["envFrom"]
        secret = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in container["env"]
            if "valueFrom" in e
        }
        for name in ("DISPATCHER_REDIS_PASSWORD", "DISPATCHER_REDIS_SENTINEL_PASSWORD"):
            assert secret[name] == name, deployment
        assert "DISPATCHER_REDIS_URL" not in {e["name"] for e in container["env"]}

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name in ("worker", "api", "ingress"):
        env = compose[name]["environment"]
        assert env["DISPATCHER_REDIS_SENTINELS"].split(",") == [
            f"sentinel-{i}:26379" for i in range(3)
        ]
        assert env["DISPATCHER_REDIS_SENTINEL_MASTER"] == "campaigns"
        assert "DISPATCHER_REDIS_URL" not in env
    for i in range(3):
        assert compose[f"redis-{i}"]["command"] == ["data"]
        assert compose[f"sentinel-{i}"]["command"] == ["sentinel"]
        for node in (f"redis-{i}", f"sentinel-{i}"):
            assert compose[node]["entrypoint"] == ["sh", "/usr/local/etc/redis/redis-start.sh"]
            assert compose[node]["environment"]["SELF"] == node
            assert compose[node]["environment"]["REDIS_INITIAL_PRIMARY"] == "redis-0 6379"


# -- the service surface (issue 21, item 8) -------------------------------------------------


def test_the_api_has_a_service_and_its_tokens_come_from_the_secret(
    manifests: list[dict[str, Any]],
) -> None:
    api = find(manifests, "Deployment", "campaigns-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["campaigns", "api"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert {"name": "http", "containerPort": port} in container["ports"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = find(manifests, "Service", "campaigns-api")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "campaigns-api"}
    tokens = [e for e in container["env"] if e["name"] == "DISPATCHER_API_TOKENS"]
    assert tokens[0]["valueFrom"]["secretKeyRef"]["key"] == "DISPATCHER_API_TOKENS"

    example = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())["stringData"]
    assert {"DISPATCHER_API_TOKENS", "DISPATCHER_WEBHOOK_SECRET"} <= set(example)
    webhooks = find(manifests, "Deployment", "campaigns-webhooks")
    (ingress,) = webhooks["spec"]["template"]["spec"]["containers"]
    assert ingress["command"][:2] == ["campaigns", "ingress"]
    assert "DISPATCHER_WEBHOOK_SECRET" in {e["name"] for e in ingress["env"]}
    find(manifests, "Service", "campaigns-webhooks")

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    command = compose["api"]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert any(
        str(p).endswith(f":{command[command.index('--port') + 1]}") for p in compose["api"]["ports"]
    )
    assert "DISPATCHER_API_TOKENS" in compose["api"]["environment"]
    assert "DISPATCHER_API_TOKENS" not in compose["worker"]["environment"]


def test_each_workers_metrics_port_is_exposed(manifests: list[dict[str, Any]]) -> None:
    worker = find(manifests, "Deployment", "campaigns-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    settings = find(manifests, "ConfigMap", "campaigns-dispatcher")["data"]
    port = int(settings["DISPATCHER_METRICS_PORT"])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    metrics = find(manifests, "Service", "campaigns-worker-metrics")
    assert metrics["spec"]["clusterIP"] == "None"  # one address per worker pod
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["worker"]
    port = int(compose["environment"]["DISPATCHER_METRICS_PORT"])
    (published,) = compose["ports"]
    host, container_port = str(published).rsplit(":", 1)
    first, last = (int(p) for p in host.rsplit(":", 1)[1].split("-"))
    assert int(container_port) == port
    assert last - first + 1 == compose["deploy"]["replicas"], "one host port per replica"


def test_systemd_has_the_units_its_comments_promise() -> None:
    units = DEPLOY / "systemd"
    promised: set[str] = set()
    for unit in units.glob("*.service"):
        promised |= set(
            re.findall(r"\b(campaigns-[a-z]+@?)(?:\.service|\b(?=@))", unit.read_text())
        )
    assert {"campaigns-worker", "campaigns-worker@", "campaigns-api"} <= promised
    for name in promised:
        assert (units / f"{name}.service").is_file(), f"{name}.service is promised but missing"
    template = (units / "campaigns-worker@.service").read_text()
    assert "DISPATCHER_METRICS_PORT=%i" in template
    for unit, command in (("campaigns-api", "api"), ("campaigns-ingress", "ingress")):
        text = (units / f"{unit}.service").read_text()
        assert re.search(rf"^ExecStart=\S+/campaigns {command} --host 0\.0\.0\.0 ", text, re.M)


# -- redis-start.sh, run for real -----------------------------------------------------------


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll a synchronous check (these are separate processes) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            result = check()
            if result:
                return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-cli")),
    reason="needs redis-server and redis-cli on PATH, as in the redis image",
)
def test_redis_start_fails_over_and_brings_the_old_primary_back_as_a_replica(
    tmp_path: Path,
) -> None:
    """Three data nodes and three sentinels as the deploy files start them; the
    sentinels' down-after is shortened to 1 s and full syncs start at once, so
    the whole takes seconds."""
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("redis-replica.conf", "redis-start.sh"):
        shutil.copy(DEPLOY / name, conf / name)
    # Full syncs start at once instead of waiting 5 s for more replicas to join.
    redis_conf_text = (DEPLOY / "redis.conf").read_text()
    (conf / "redis.conf").write_text(redis_conf_text + "\nrepl-diskless-sync-delay 0\n")
    sentinel_conf = (DEPLOY / "sentinel.conf").read_text()
    (conf / "sentinel.conf").write_text(
        sentinel_conf.replace(
            "down-after-milliseconds campaigns 5000", "down-after-milliseconds campaigns 1000"
        )
    )
    data_ports = [_port() for _ in range(3)]
    sentinel_ports = [_port() for _ in range(3)]
    env = {
        **os.environ,
        "SELF": "127.0.0.1",
        "REDIS_CONF_DIR": str(conf),
        "REDIS_INITIAL_PRIMARY": f"127.0.0.1 {data_ports[0]}",
        "REDIS_SENTINELS": " ".join(f"127.0.0.1:{p}" for p in sentinel_ports),
        "DISPATCHER_REDIS_PASSWORD": "data-secret",
        "DISPATCHER_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(role: str, index: int) -> None:
        home = tmp_path / f"{role}-{index}"
        home.mkdir(exist_ok=True)
        port_env = {"REDIS_PORT": str(data_ports[index])} if role == "data" else {}
        if role == "sentinel":
            port_env = {"SENTINEL_PORT": str(sentinel_ports[index])}
        with (home / "log").open("ab") as log:
            procs[f"{role}-{index}"] = subprocess.Popen(
                ["sh", str(conf / "redis-start.sh"), role],
                env={**env, **port_env, "REDIS_DATA_DIR": str(home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def data(index: int) -> redis.Redis:
        return redis.Redis(port=data_ports[index], password="data-secret", socket_timeout=2)

    sentinel = redis.Redis(port=sentinel_ports[0], password="sentinel-secret", socket_timeout=2)

    def primary_port() -> int | None:
        answer = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "campaigns")
        return int(answer[1]) if answer else None

    try:
        for index in range(3):
            start("data", index)
        # Sentinels learn replicas from the primary's INFO, read every 10 s:
        # start them once the replicas are there, so the first read finds them.
        _until(lambda: data(0).info("replication")["connected_slaves"] == 2, "two replicas")
        for index in range(3):
            start("sentinel", index)
        assert _until(primary_port, "the sentinels to name the primary") == data_ports[0]
        # Writes need a replica that acknowledges (min-replicas-to-write 1).
        _until(lambda: data(0).set("k", "v"), "a write on the primary")
        with pytest.raises(redis.ReadOnlyError):
            data(1).set("k", "v")

        # A sentinel fails over only to replicas it knows, with peers it knows.
        def ready(port: int) -> bool:
            s = redis.Redis(port=port, password="sentinel-secret", socket_timeout=2)
            replicas = s.execute_command("SENTINEL", "REPLICAS", "campaigns")
            peers = s.execute_command("SENTINEL", "SENTINELS", "campaigns")
            flags = [dict(zip(r[::2], r[1::2], strict=True)).get(b"flags") for r in replicas]
            return len(peers) == 2 and flags == [b"slave", b"slave"]

        for port in sentinel_ports:
            _until(lambda port=port: ready(port), "every sentinel to know its replicas and peers")
        procs.pop("data-0").kill()
        new = _until(lambda: (p := primary_port()) != data_ports[0] and p, "a failover")
        promoted = data(data_ports.index(new))
        _until(lambda: promoted.set("k", "after"), "a write on the promoted replica")

        start("data", 0)  # the old primary asks the sentinels first: it comes back a replica
        info = _until(
            lambda: (i := data(0).info("replication"))["role"] == "slave" and i,
            "the old primary to come back",
        )
        assert info["master_port"] == new
        assert _until(lambda: data(0).get("k") == b"after", "replication to the old primary")
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(10)
