"""Configuration every service shares, read from environment variables (12-factor).

Each service subclasses `CommonSettings` and adds its own fields; a field whose env name
must not clash across services (e.g. `AUTH_DATABASE_URL`) sets it with `alias`.
Every variable read here or in a service is documented in the root `.env.example`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, case_sensitive=False
    )

    environment: str = Field("development", alias="ENVIRONMENT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: str = Field("json", alias="LOG_FORMAT")  # json | console

    http_host: str = Field("127.0.0.1", alias="HTTP_HOST")
    http_port: int = Field(8000, alias="HTTP_PORT")
    # Peers whose X-Forwarded-For uvicorn believes (the gateway): loopback natively, the
    # compose network in containers, where Traefik is not on 127.0.0.1.
    forwarded_allow_ips: str = Field("127.0.0.1,::1", alias="FORWARDED_ALLOW_IPS")

    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_key_prefix: str = Field("videoflix:", alias="REDIS_KEY_PREFIX")

    nats_url: str = Field("nats://127.0.0.1:4222", alias="NATS_URL")
    # this process's NATS user (videoflix_shared.access); empty: the server asks for none
    nats_user: str = Field("", alias="NATS_USER")
    nats_password: str = Field("", alias="NATS_PASSWORD")
    nats_subject_prefix: str = Field("", alias="NATS_SUBJECT_PREFIX")
    nats_stream_prefix: str = Field("VIDEOFLIX_", alias="NATS_STREAM_PREFIX")
    # How often a stream's owner looks for it and a consumer for its durable: a stream or
    # consumer deleted meanwhile is re-created (and the consumer's backlog metrics updated).
    nats_check_interval_seconds: float = Field(5.0, gt=0, alias="NATS_CHECK_INTERVAL_SECONDS")

    cors_allowed_origins: str = Field(
        "http://127.0.0.1:5500,http://localhost:5500", alias="CORS_ALLOWED_ORIGINS"
    )
    max_json_body_bytes: int = Field(64 * 1024, alias="MAX_JSON_BODY_BYTES")

    jwt_issuer: str = Field("videoflix-auth", alias="JWT_ISSUER")
    jwt_audience: str = Field("videoflix", alias="JWT_AUDIENCE")
    jwks_url: str = Field("http://127.0.0.1:8001/.well-known/jwks.json", alias="JWKS_URL")
    jwks_min_refetch_seconds: float = Field(30.0, alias="JWKS_MIN_REFETCH_SECONDS")
    # Keys fetched from the JWKS are trusted this long, then fetched again: a key removed
    # from auth's JWKS stops being accepted within it (verified-token cache included).
    jwks_max_age_seconds: float = Field(300.0, gt=0, alias="JWKS_MAX_AGE_SECONDS")
    # Tolerated clock difference with auth on exp / iat / nbf.
    jwt_leeway_seconds: float = Field(30.0, ge=0, alias="JWT_LEEWAY_SECONDS")

    # OpenTelemetry spans over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318);
    # empty: no spans (trace ids still carried and logged), no collector needed.
    otel_exporter_otlp_endpoint: str = Field("", alias="OTEL_EXPORTER_OTLP_ENDPOINT")

    public_base_url: str = Field("http://127.0.0.1:8000", alias="PUBLIC_BASE_URL")
    frontend_url: str = Field("http://127.0.0.1:5500", alias="FRONTEND_URL")
    media_root: Path = Field(Path(".data/media"), alias="MEDIA_ROOT")
    cookie_secure: bool = Field(False, alias="COOKIE_SECURE")

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allowed_origins.split(",") if o.strip()]

    @property
    def is_production(self) -> bool:
        return self.environment == "production"
