"""Process settings, read from ``DISPATCHER_*`` environment variables or ``.env``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DISPATCHER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    provider_url: str = "http://127.0.0.1:8089"
    provider_api_key: SecretStr = SecretStr("")
    provider_dialect: Literal["minivoice", "voipbin"] = "minivoice"
    provider_timeout_seconds: float = Field(10.0, gt=0)
    provider_honours_idempotency: bool = True
    """False for a provider that ignores Idempotency-Key: unresolved attempts
    are then looked up by attempt ID, or marked in doubt, never re-sent."""
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 secret the provider signs webhooks with (``campaigns ingress``)."""
    queue_name: str = "dispatcher:queue"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    lease_seconds: float = Field(10.0, gt=0)
    """A dispatching worker renews its campaign lease well within this."""
    sweep_interval_seconds: int = Field(5, ge=1, le=60)
    poll_interval_seconds: float = Field(1.0, gt=0)
    """First delay before an accepted call is read back; doubles up to the cap."""
    poll_max_interval_seconds: float = Field(30.0, gt=0)
    retry_attempts: int = Field(5, ge=0)
    """Transient failures of one create request before it is left unresolved."""
    retry_base_seconds: float = Field(0.2, gt=0)
    retry_max_seconds: float = Field(5.0, gt=0)
    provider_unavailable_cooldown_seconds: float = Field(30.0, gt=0)
    job_timeout_seconds: int = Field(60, ge=5)
