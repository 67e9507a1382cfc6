"""The Redis location settings: a URL, or sentinels; refused by name when half-given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from campaigns.connection import RedisLocation
from campaigns.queue import redis_settings
from campaigns.settings import Settings
from campaigns.store.replicas import NotReplicated, ReplicaAck

SENTINELS = "s1:26379, s2:26380,[::1]:26381"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"DISPATCHER_{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"DISPATCHER_{name.upper()}", value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[tuple[object, ...], str]:
    with pytest.raises(ValidationError) as raised:
        load(monkeypatch, **env)
    first = raised.value.errors(include_input=False)[0]
    return tuple(first["loc"]), str(first["msg"])


def test_sentinels_with_their_service_make_a_sentinel_location(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load(
        monkeypatch,
        redis_sentinels=SENTINELS,
        redis_sentinel_master="dispatcher",
        redis_password="data-secret",
        redis_sentinel_password="sentinel-secret",
    )
    location = RedisLocation.from_settings(settings)
    assert location.sentinels == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert location.service == "dispatcher"
    assert location.setting == "DISPATCHER_REDIS_SENTINELS"
    described = location.describe()
    assert "s1:26379" in described and "dispatcher" in described
    assert "secret" not in described and "secret" not in repr(location)
    arq = redis_settings(location)
    assert arq.sentinel and arq.sentinel_master == "dispatcher"
    assert arq.host == [("s1", 26379), ("s2", 26380), ("::1", 26381)]
    assert arq.password == "data-secret"
    assert {"data-secret", "sentinel-secret"} <= set(settings.secret_values())


def test_a_url_stays_a_single_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, redis_url="redis://127.0.0.1:7000/2", redis_password="pw-x")
    location = RedisLocation.from_settings(settings)
    assert not location.uses_sentinels and location.setting == "DISPATCHER_REDIS_URL"
    arq = redis_settings(location)
    assert (arq.host, arq.port, arq.database, arq.password) == ("127.0.0.1", 7000, 2, "pw-x")


@pytest.mark.parametrize(
    ("env", "field", "why"),
    [
        ({"redis_sentinels": "s1:26379"}, "redis_sentinel_master", "DISPATCHER_REDIS_SENTINELS"),
        ({"redis_sentinel_master": "dispatcher"}, "redis_sentinel_master", "set both"),
        ({"redis_sentinel_password": "x-secret"}, "redis_sentinel_password", "SENTINELS"),
        ({"redis_sentinels": "s1"}, "redis_sentinels", "host:port"),
        ({"redis_sentinels": "s1:0"}, "redis_sentinels", "port"),
        ({"redis_sentinels": "s1:99999"}, "redis_sentinels", "port"),
        ({"redis_sentinels": "s1:26379,s2:x"}, "redis_sentinels", "sentinel 2"),
        ({"redis_sentinels": ":26379"}, "redis_sentinels", "host:port"),
        ({"redis_sentinels": "redis://s1:26379"}, "redis_sentinels", "host:port"),
        ({"redis_sentinels": " , "}, "redis_sentinels", "host:port"),
        ({"redis_sentinels": "s 1:26379"}, "redis_sentinels", "host:port"),
        (
            {"redis_sentinels": "s1:26379", "redis_sentinel_master": "a b"},
            "redis_sentinel_master",
            "service name",
        ),
        ({"redis_password": ""}, "redis_password", "empty"),
        (
            {"redis_url": "redis://:pw@127.0.0.1:6379/0", "redis_password": "other"},
            "redis_password",
            "one of them",
        ),
        ({"redis_min_replicas": "-1"}, "redis_min_replicas", ""),
        ({"redis_min_replicas": "x"}, "redis_min_replicas", ""),
        ({"redis_replica_timeout_ms": "0"}, "redis_replica_timeout_ms", ""),
    ],
)
def test_half_given_or_malformed_is_refused_by_name(
    env: dict[str, str], field: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loc, message = refused(monkeypatch, **env)
    assert loc == (field,)
    assert why in message
    assert "secret" not in message


def test_a_url_and_sentinels_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    loc, message = refused(
        monkeypatch,
        redis_url="redis://127.0.0.1:6379/0",
        redis_sentinels="s1:26379",
        redis_sentinel_master="dispatcher",
    )
    assert loc == ()
    assert "DISPATCHER_REDIS_URL" in message and "DISPATCHER_REDIS_SENTINELS" in message


def test_min_replicas_zero_sends_no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(monkeypatch).replica_ack is None
    settings = load(monkeypatch, redis_min_replicas="1", redis_replica_timeout_ms="250")
    assert settings.replica_ack == (1, 250)
    ack = ReplicaAck.of(settings.replica_ack)
    assert ack is not None
    ack.check(1)
    with pytest.raises(NotReplicated, match="0 of the 1 replicas"):
        ack.check(0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DISPATCHER_REDIS_SENTINELS": "s1:26379"}, "DISPATCHER_REDIS_SENTINEL_MASTER"),
        ({"DISPATCHER_REDIS_SENTINEL_MASTER": "dispatcher"}, "DISPATCHER_REDIS_SENTINEL_MASTER"),
        (
            {"DISPATCHER_REDIS_SENTINELS": "s1", "DISPATCHER_REDIS_SENTINEL_MASTER": "d"},
            "DISPATCHER_REDIS_SENTINELS",
        ),
        (
            {
                "DISPATCHER_REDIS_URL": "redis://127.0.0.1:1/0",
                "DISPATCHER_REDIS_SENTINELS": "s1:26379",
                "DISPATCHER_REDIS_SENTINEL_MASTER": "d",
            },
            "DISPATCHER_REDIS_SENTINELS",
        ),
        ({"DISPATCHER_REDIS_MIN_REPLICAS": "many"}, "DISPATCHER_REDIS_MIN_REPLICAS"),
    ],
)
def test_the_cli_exits_2_naming_the_setting(
    env: dict[str, str], named: str, tmp_path: object
) -> None:
    """Nothing is written: the settings are refused before Redis is opened."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    out = subprocess.run(
        [sys.executable, "-m", "campaigns.operators.cli", "dnc", "add", "+15551230002"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert out.returncode == 2, out.stderr
    assert named in out.stderr
    assert "Traceback" not in out.stderr
