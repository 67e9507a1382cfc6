"""Which Redis errors are faults to wait out (campaigns/store/faults.py), and one log line per fault."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    ExecAbortError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.testing import capture_logs

from campaigns.store.faults import (
    REDIS_FAULTS,
    FaultLog,
    NoReplicasError,
    backoff_seconds,
    fault_kind,
    is_redis_fault,
    redis_retry,
)


def _watch_error(cause: BaseException) -> WatchError:
    """What redis-py raises when the connection fails while a key is watched."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise WatchError(
                "A ConnectionError occurred on while watching one or more keys"
            ) from exc
    except WatchError as watch:
        return watch


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RedisConnectionError("Error 111 connecting"), "connection_lost"),
        (ConnectionRefusedError(111, "refused"), "connection_lost"),
        (RedisTimeoutError("Timeout reading"), "timeout"),
        (TimeoutError(), "timeout"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "out_of_memory"),
        (ReadOnlyError("You can't write against a read only replica."), "read_only"),
        (MasterDownError("Link with MASTER is down"), "master_down"),
        (NoReplicasError("Not enough good replicas to write."), "no_replicas"),
        (ClusterDownError("The cluster is down"), "cluster_down"),
        # As redis-py raises them when nobody taught it the code:
        (ResponseError("NOREPLICAS Not enough good replicas to write."), "noreplicas"),
        (ResponseError("MASTERDOWN Link with MASTER is down"), "masterdown"),
        (ResponseError("OOM command not allowed"), "oom"),
        (_watch_error(RedisConnectionError("Connection closed by server.")), "connection_lost"),
        (_watch_error(OutOfMemoryError("command not allowed")), "out_of_memory"),
    ],
)
def test_a_fault_is_named(exc: BaseException, kind: str) -> None:
    assert is_redis_fault(exc)
    assert fault_kind(exc) == kind


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("invalid password"),  # waiting cannot fix credentials
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ResponseError("ERR Error running script: bad argument"),
        NoScriptError("No matching script"),
        ExecAbortError("Transaction discarded because of previous errors."),
        DataError("Invalid input of type: 'dict'"),
        WatchError("Watched variable changed."),  # another client won: not a fault
        ValueError("not Redis at all"),
    ],
)
def test_a_bad_request_is_not_a_fault(exc: BaseException) -> None:
    assert not is_redis_fault(exc)


def test_redis_py_parses_the_refusals_it_did_not_name() -> None:
    for reply, cls in (
        ("NOREPLICAS Not enough good replicas to write.", NoReplicasError),
        (
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            MasterDownError,
        ),
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("READONLY You can't write against a read only replica.", ReadOnlyError),
    ):
        error = BaseParser.parse_error(reply)
        assert isinstance(error, cls), reply
        assert isinstance(error, REDIS_FAULTS)


def test_the_retry_covers_every_fault_class() -> None:
    retry = redis_retry()
    for cls in REDIS_FAULTS:
        assert cls in retry._supported_errors


def test_backoff_is_bounded_and_never_zero() -> None:
    delays = [backoff_seconds(n, base=0.05, cap=2.0) for n in range(100)]
    assert all(0 < d <= 2.0 for d in delays)
    assert max(delays[40:]) > 0.9  # it grows to the cap


def test_one_line_per_fault_not_per_attempt() -> None:
    faults = FaultLog(quiet_seconds=60)
    with capture_logs() as logs:
        for _ in range(50):
            faults.failed(OutOfMemoryError("command not allowed"))
            faults.succeeded()  # a read got through meanwhile: the fault goes on
        for _ in range(50):
            faults.failed(RedisConnectionError("Connection refused"))
    assert [(e["event"], e["fault"]) for e in logs] == [
        ("redis_fault", "out_of_memory"),
        ("redis_fault", "connection_lost"),
    ]
    assert faults.faults == 2


def test_recovery_is_said_once_redis_served_for_a_quiet_while() -> None:
    faults = FaultLog(quiet_seconds=0)
    with capture_logs() as logs:
        faults.failed(BusyLoadingError("loading"))
        faults.succeeded()
        faults.succeeded()
        faults.failed(BusyLoadingError("loading"))
    assert [e["event"] for e in logs] == ["redis_fault", "redis_recovered", "redis_fault"]
    assert logs[1]["fault"] == "loading"
    assert faults.current == "loading"
