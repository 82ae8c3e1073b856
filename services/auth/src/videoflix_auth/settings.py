"""Auth service settings (shared ones come from CommonSettings).

Every variable is documented in the auth section of the root `.env.example`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class AuthSettings(CommonSettings):
    http_port: int = Field(8001, alias="HTTP_PORT")
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_auth", alias="AUTH_DATABASE_URL"
    )
    # current.pem signs; previous.pem (optional) is still published in the JWKS during a rotation.
    keys_dir: Path = Field(Path(".data/keys"), alias="AUTH_KEYS_DIR")

    access_token_ttl_seconds: int = Field(30 * 60, gt=0, alias="AUTH_ACCESS_TOKEN_TTL_SECONDS")
    refresh_token_ttl_seconds: int = Field(
        7 * 24 * 3600, gt=0, alias="AUTH_REFRESH_TOKEN_TTL_SECONDS"
    )
    activation_ttl_seconds: int = Field(24 * 3600, gt=0, alias="AUTH_ACTIVATION_TTL_SECONDS")
    password_reset_ttl_seconds: int = Field(3600, gt=0, alias="AUTH_PASSWORD_RESET_TTL_SECONDS")

    # Seals the links of mail events for the mailer (videoflix_shared.sealing); required in
    # production. PREVIOUS: comma-separated older keys, still opened during a rotation.
    mail_token_key: str = Field("", alias="MAIL_TOKEN_KEY")
    mail_token_keys_previous: str = Field("", alias="MAIL_TOKEN_KEYS_PREVIOUS")
    # How long the AUTH stream keeps mail events: an email not sent by then is stale (its
    # links expire) and its sealed link should rest nowhere longer.
    stream_max_age_seconds: float = Field(6 * 3600, gt=0, alias="AUTH_STREAM_MAX_AGE_SECONDS")

    admin_email: str = Field("", alias="ADMIN_EMAIL")
    admin_password: str = Field("", alias="ADMIN_PASSWORD")

    # argon2id cost (OWASP's minimum recommendation by default).
    argon2_time_cost: int = Field(2, ge=1, alias="AUTH_ARGON2_TIME_COST")
    argon2_memory_kib: int = Field(19456, ge=8, alias="AUTH_ARGON2_MEMORY_KIB")
    argon2_parallelism: int = Field(1, ge=1, alias="AUTH_ARGON2_PARALLELISM")

    login_limit_per_ip: int = Field(30, ge=1, alias="AUTH_LOGIN_LIMIT_PER_IP")
    login_limit_per_email: int = Field(10, ge=1, alias="AUTH_LOGIN_LIMIT_PER_EMAIL")
    login_window_seconds: int = Field(300, ge=1, alias="AUTH_LOGIN_WINDOW_SECONDS")
    reset_limit_per_ip: int = Field(20, ge=1, alias="AUTH_RESET_LIMIT_PER_IP")
    reset_limit_per_email: int = Field(3, ge=1, alias="AUTH_RESET_LIMIT_PER_EMAIL")
    reset_window_seconds: int = Field(3600, ge=1, alias="AUTH_RESET_WINDOW_SECONDS")

    # Registration per client IP; and every email an address can be sent (activation,
    # "someone tried to register", password reset) shares one budget per address, counted
    # for every submission whether or not the address has an account.
    register_limit_per_ip: int = Field(20, ge=1, alias="AUTH_REGISTER_LIMIT_PER_IP")
    register_window_seconds: int = Field(3600, ge=1, alias="AUTH_REGISTER_WINDOW_SECONDS")
    email_limit_per_address: int = Field(5, ge=1, alias="AUTH_EMAIL_LIMIT_PER_ADDRESS")
    email_window_seconds: int = Field(3600, ge=1, alias="AUTH_EMAIL_WINDOW_SECONDS")

    # A rotated refresh token presented again within this many seconds (two tabs, parallel
    # requests after a 401) gets a new pair in its session instead of revoking it.
    refresh_reuse_grace_seconds: int = Field(20, ge=0, alias="AUTH_REFRESH_REUSE_GRACE_SECONDS")

    # Overload: at most this many argon2 computations at once per process; a request that
    # waits longer than AUTH_HASH_WAIT_SECONDS for one answers 503 with Retry-After.
    hash_concurrency: int = Field(1, ge=1, alias="AUTH_HASH_CONCURRENCY")
    hash_wait_seconds: float = Field(2.0, gt=0, alias="AUTH_HASH_WAIT_SECONDS")
    # Database pool per process; waiting longer than the timeout for a connection is a 503.
    db_pool_size: int = Field(10, ge=1, alias="AUTH_DB_POOL_SIZE")
    db_pool_overflow: int = Field(10, ge=0, alias="AUTH_DB_POOL_OVERFLOW")
    db_pool_timeout_seconds: float = Field(5.0, gt=0, alias="AUTH_DB_POOL_TIMEOUT_SECONDS")

    # A reset request for an unknown address does less work than for a known one; both
    # answer no sooner than this, so response time does not tell which it was.
    reset_response_floor_ms: int = Field(150, ge=0, alias="AUTH_RESET_RESPONSE_FLOOR_MS")

    frontend_login_path: str = Field("/pages/auth/login.html", alias="AUTH_FRONTEND_LOGIN_PATH")
    frontend_forgot_password_path: str = Field(
        "/pages/auth/forgot_password.html", alias="AUTH_FRONTEND_FORGOT_PASSWORD_PATH"
    )
