"""Settings: DISPATCHER_* variables, .env files, the API key kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from campaigns.settings import Settings


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_QUEUE_NAME", "q:env")
    monkeypatch.setenv("DISPATCHER_PROVIDER_DIALECT", "voipbin")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.queue_name == "q:env"
    assert settings.provider_dialect == "voipbin"


def test_reads_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCHER_QUEUE_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DISPATCHER_QUEUE_NAME=q:dotenv\nDISPATCHER_PROVIDER_API_KEY=sk_live_dotenv_secret\n"
    )
    settings = Settings()
    assert settings.queue_name == "q:dotenv"
    assert settings.provider_api_key.get_secret_value() == "sk_live_dotenv_secret"


def test_the_api_key_never_shows_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_API_KEY", "sk_live_never_print_me")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "sk_live_never_print_me" not in text


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_PROVIDER_DIALECT", "carrier-pigeon")
    with pytest.raises(ValidationError, match="provider_dialect"):
        Settings(_env_file=None)  # type: ignore[call-arg]
