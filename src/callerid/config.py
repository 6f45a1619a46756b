"""Settings, read from the environment (prefix ``CALLERID_``).

Every limit of SPEC.md is a setting whose default is the spec's number, so an operator can tune it and
tests can shrink it.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FEATURES = ("call_personalisation", "number_management", "call_me_back", "user_feedback")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLERID_", extra="ignore")

    # --- where things live ---------------------------------------------------------------------------
    database_url: str = Field(
        default="sqlite+aiosqlite:///./callerid.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db; shares rate limits and push fan-out across processes"
    )
    data_dir: Path = Field(
        default=Path("./callerid-data"),
        description="demo credentials and the SQLite secret key; logos are in the database (older versions kept "
        "them under <data_dir>/logos: see `callerid labels import-logos`)",
    )
    public_base_url: str | None = Field(
        default=None, description="absolute base URL used in links we hand out (logo_url, downloads)"
    )

    # --- logos (callerid.labels.logos; README "Logos") ----------------------------------------------------------
    logo_store: Literal["database", "s3"] = Field(
        default="database",
        description="where logo bytes live: `database` (table label_logos), or `s3`, an S3-compatible object store "
        "(needs `pip install 'callerid[s3]'`; credentials from the standard AWS chain: AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY, a profile or an instance role). Either way every host serves every logo",
    )
    logo_s3_bucket: str | None = Field(default=None, description="the bucket, with logo_store=s3 (required then)")
    logo_s3_endpoint_url: str | None = Field(
        default=None, description="the store's URL for S3-compatible stores (MinIO, Ceph, R2...); default AWS S3"
    )
    logo_s3_region: str | None = Field(default=None, description="the bucket's region (default: the AWS chain's)")
    logo_s3_prefix: str = Field(default="logos/", max_length=200, description="object names start with this")

    database_pool_size: int = Field(
        default=32,
        ge=1,
        description="PostgreSQL connections each process keeps open (as many again may be opened under bursts); "
        "under the pool size, concurrent requests open and close extra connections all the time",
    )

    # --- serving ---------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    run_jobs_in_process: bool = Field(
        default=True, description="run the durable job runner inside `serve` (embedded default)"
    )
    log_level: str = "INFO"
    log_json: bool = True
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, /metrics answers only requests with `Authorization: Bearer <token>`; without it "
        "/metrics is open on the embedded default (SQLite) and refused (403) with PostgreSQL (production)",
    )

    # --- secrets at rest -----------------------------------------------------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="base64 of 32 bytes: encrypts webhook signing secrets in the database (AES-256-GCM). Several "
        "keys comma-separated: the first encrypts, all decrypt (rotation: `callerid secret-key rotate`). Required "
        "with PostgreSQL; on SQLite, when unset, a key is generated once into <data_dir>/secret.key (mode 0600)",
    )

    # --- auth (SPEC §3) ---------------------------------------------------------------------------------
    max_api_keys_per_account: int = 5
    token_ttl_seconds: int = 3600
    token_mint_limit: int = 10
    token_mint_window_seconds: int = 1800

    # --- the web console (SPEC §10): sign-in, sessions, one-time links ---------------------------------------
    console_session_idle_minutes: int = Field(default=60, ge=1, description="a console session ends after this idle")
    console_session_max_hours: int = Field(
        default=12, ge=1, description="a console session ends this long after sign-in"
    )
    console_sign_in_failures_per_email: str = Field(
        default="5/15 minutes",
        description="failed sign-ins per e-mail address before it is throttled (limits notation)",
    )
    console_sign_in_failures_per_address: str = Field(
        default="20/15 minutes", description="failed sign-ins per client IP address before it is throttled"
    )
    console_mail_requests_per_email: str = Field(
        default="5/hour", description="password-reset and sign-in-code e-mails per address (no mail flooding)"
    )
    console_code_ttl_minutes: int = Field(default=10, ge=1, description="an e-mailed sign-in code is valid this long")
    console_code_max_tries: int = Field(default=5, ge=1, description="wrong sign-in codes before the sign-in restarts")
    console_code_resend_seconds: int = Field(default=60, ge=0, description="wait before another code can be sent")
    console_reset_link_minutes: int = Field(default=60, ge=1, description="a password-reset link is valid this long")
    console_invite_days: int = Field(default=7, ge=1, description="an invitation link is valid this long")
    console_trusted_browser_days: int = Field(
        default=30, ge=1, description="a browser that confirmed a sign-in code is not asked again for this long"
    )
    console_password_min_length: int = Field(default=10, ge=8, description="shortest console password accepted")
    console_upload_max_bytes: int = Field(
        default=3 * 1024 * 1024, description="largest console form post (a logo is under 2 MB; the rest is fields)"
    )

    # --- request limits (callerid.request_limits, callerid.http) ------------------------------------------
    max_request_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="largest request body (413 beyond it, before it is read whole); a full 500-record batch is "
        "about 120 KB. The console's form posts are bounded by console_upload_max_bytes instead",
    )
    # At most 254: deeper than orjson writes (it reads up to 1024), and the check recurses once per level.
    max_json_depth: int = Field(
        default=32,
        ge=3,
        le=254,
        description="deepest nesting of objects and arrays in a JSON request body (deeper is answered like "
        "unparsable JSON); the API's own bodies nest 3 deep",
    )
    max_websocket_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="largest message a phone may send on the push stream; a larger one closes it with 1009",
    )

    # --- rate limits (SPEC §4), in the `limits` library's notation ---------------------------------------
    rate_limit_general: str = "100/second"
    rate_limit_batch_v2: str = "60/minute"
    batch_max_records: int = Field(
        default=500,
        ge=1,
        le=65_536,  # a record's id holds its position in the batch in 16 bits (callerid.personalisation.models)
        description="records per B1/B2 request (SPEC §4)",
    )

    # --- phones and delivery (SPEC §8, §11) -----------------------------------------------------------------
    min_app_version: str = Field(
        default="1.0.0", description="lowest app version that can receive pushes (compared as versions, PEP 440)"
    )
    outcome_message_not_app_user: str = "Not an app user"
    outcome_message_os_not_supported: str = "OS not supported"
    outcome_message_app_version_not_supported: str = "App version not supported"
    outcome_message_failed_to_push: str = "Failed to push"
    push_heartbeat_seconds: float = Field(
        default=30.0, description="idle WebSocket streams get a heartbeat message this often (detects dead phones)"
    )
    token_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="business requests may reuse a token check this old: a token revoked in another process (its key "
        "regenerated or deleted) is refused by every process within this time, at once by the one that revoked it; "
        "0 disables",
    )
    device_auth_cache_seconds: float = Field(
        default=5.0,
        description="caller-ID lookups may reuse a device-token check this old (other processes notice a "
        "replaced or removed device within this time); 0 disables",
    )

    # --- phones prove their number (callerid.delivery.verification) -----------------------------------------
    device_verifier: Literal["otp", "trusted_backend", "none"] = Field(
        default="otp",
        description="how POST /app/v1/devices proves the phone owns its number: otp (a code by SMS), "
        "trusted_backend (the app vendor's server vouches with an app credential) or none (no proof: only when "
        "set explicitly)",
    )
    device_code_ttl_minutes: int = Field(default=10, ge=1, description="an SMS registration code is valid this long")
    device_code_max_tries: int = Field(
        default=5, ge=1, description="wrong codes before a pending registration ends (counted over its resends)"
    )
    device_code_resend_seconds: int = Field(default=60, ge=0, description="wait before another code can be sent")
    device_codes_per_number: str = Field(
        default="5/hour", description="codes sent to one number (registrations and resends; limits notation)"
    )
    device_codes_per_address: str = Field(
        default="20/hour", description="codes one client address may have sent (to any numbers)"
    )
    device_code_failures_per_number: str = Field(
        default="10/hour", description="wrong codes for one number before its verifications are refused for a while"
    )
    device_code_failures_per_address: str = Field(
        default="30/hour", description="wrong codes from one client address before its verifications are refused"
    )
    sms_webhook_url: str | None = Field(
        default=None,
        description="the operator's SMS gateway: each registration code is POSTed here as signed JSON "
        "({to, message, code, expires_at}). Unset: codes go to the development SMS outbox (SQLite only)",
    )
    sms_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_ secret signing the SMS webhook (Standard Webhooks); required with the URL"
    )
    sms_webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="longest wait for the SMS gateway while a phone waits for its answer"
    )
    sms_code_message: str = Field(
        default="Your callerid code is {code}", description="the SMS text; {code} is replaced by the code"
    )

    # --- caller-ID lookup assertions (PASSporT, RFC 8225 / RFC 9795) ------------------------------------------
    assertion_ttl_seconds: int = Field(default=300, description="lifetime (exp - iat) of a signed call assertion")
    signing_process: bool = Field(
        default_factory=lambda: (os.cpu_count() or 1) > 1,
        description="sign call assertions in a helper process (another core); default: when there are 2+ CPUs",
    )

    # --- call signals from phones (callerid.analytics.signals; POST /app/v1/call-signals) ---------------------
    signal_max_per_request: int = Field(
        default=50, ge=1, le=1000, description="signals one POST /app/v1/call-signals may carry (a phone's queue)"
    )
    signal_rate_limit: str = Field(
        default="120/minute",
        description="signals one device may send (limits notation); a request is refused (429) while the device's "
        "window is full, and an accepted request counts all its signals",
    )
    signal_max_skew_seconds: int = Field(
        default=300, ge=0, description="how far in the future (the phone's clock ahead) a signal's occurredAt may be"
    )
    signal_max_age_days: int = Field(default=7, ge=1, description="signals that occurred longer ago are refused")
    analytics_figures: bool = Field(
        default=True,
        description="count call records (R2 and delivered batches) into the daily figures as they are written; off "
        "only to measure what counting costs (bench/personalisation.py --figures): their figures then stay behind",
    )
    figures_fold_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="how often R2's record counts are folded into the daily figures (analytics.deltas); readers of "
        "the figures fold first anyway, so this only bounds how many wait in figure_deltas",
    )
    signal_retention_days: int = Field(
        default=90,
        ge=1,
        description="raw call signals are deleted this long after they arrived (the daily figures stay); at least "
        "signal_max_age_days + 1 is kept anyway, so that a resent event id is still known as a duplicate",
    )
    analytics_max_days: int = Field(
        default=366, ge=1, description="the longest range of days one analytics request (API, console) may ask for"
    )

    # --- durable job runner ---------------------------------------------------------------------------
    job_lease_seconds: float = 30.0
    job_poll_seconds: float = 0.25
    # Handlers in flight per runner; many wait on I/O (webhook POSTs), and the runner's own writes are batched.
    job_concurrency: int = 64
    job_max_attempts: int = 10
    job_shutdown_grace_seconds: float = 10.0

    # --- idempotent POSTs (callerid.idempotency): the Idempotency-Key header ---------------------------------------
    idempotency_key_hours: int = Field(
        default=24,
        ge=1,
        description="a POST's Idempotency-Key answers its first answer again for this long, then is deleted",
    )
    idempotency_lease_seconds: int = Field(
        default=60,
        ge=1,
        description="a request holds its Idempotency-Key this long at most; a retry with the key gets 409 meanwhile "
        "and takes the key over afterwards (the first request crashed: its work was rolled back with it)",
    )

    # --- data retention (callerid.jobs.purge): each domain's periodic purge deletes in chunks ------------------
    retention_interval_minutes: int = Field(default=60, ge=1, description="how often each domain's purge job runs")
    retention_chunk_rows: int = Field(
        default=1000, ge=1, description="rows one purge statement deletes, in its own short transaction"
    )
    retention_chunk_pause_seconds: float = Field(
        default=0.02, ge=0, description="a purge waits this long between two chunks (queued writers go first)"
    )
    retention_run_seconds: float = Field(
        default=10.0,
        ge=0,
        description="a purge job stops after this long (having deleted at least one full chunk) and continues in a "
        "new run a second later",
    )
    call_record_retention_days: int = Field(
        default=30,
        ge=1,
        description="call records, with their delivery outcome, are deleted this long after their window ended "
        "(ends_at; records refused as invalid: after they arrived), and a batch with its last record; pending "
        "records are never deleted",
    )
    device_retention_days: int = Field(
        default=180,
        ge=1,
        description="a phone's device not seen for this long (registered, or push stream connected; an open "
        "stream counts once a day) is forgotten: its token stops working and the app registers again",
    )
    cmb_request_retention_days: int = Field(
        default=90,
        ge=1,
        description="Call Me Back requests are deleted this long after they were made; CMB exports (SPEC §5.10) "
        "and webhook payloads already sent are unaffected within it, older ranges export nothing",
    )
    survey_response_retention_days: int = Field(
        default=90,
        ge=1,
        description="survey answers are deleted this long after they were given; UF exports (SPEC §5.11) of "
        "older ranges find none",
    )
    number_job_retention_days: int = Field(
        default=30,
        ge=1,
        description="finished list/delist jobs are deleted this long after they finished (numbers keep their "
        "state); unfinished jobs are never deleted",
    )
    dead_job_retention_days: int = Field(
        default=30,
        ge=1,
        description="background jobs that gave up (status dead, kept for the operator to inspect) are deleted this "
        "long after their last attempt",
    )
    blocked_attempt_retention_days: int = Field(
        default=90,
        ge=1,
        description="lookups refused by secure branding (blocked attempts) are deleted this long after they "
        "happened; their counts stay in the daily figures",
    )

    # --- number management (SPEC §7.3, §7.5) -----------------------------------------------------------
    number_request_max: int = 10_000
    feature_set_number_limit: int = 10_000
    account_number_cap: int = Field(default=100_000, description="default cap per account (account may override)")
    number_job_delay_seconds: float = Field(default=2.0, description="wait before a list/delist job is processed")
    number_verifier: str = Field(
        default="callerid.numbers.verification:accept_all",
        description="module:function deciding whether listing/delisting succeeds (SPEC §7.5 verification step)",
    )

    # --- webhooks (SPEC §9) ----------------------------------------------------------------------------
    max_webhooks_per_account: int = 5
    webhook_retry_schedule: str = Field(
        default="2m,6m,30m,1h,5h,1d,2d",
        description="delays before each retry, counted from the end of the failed attempt (s, m, h, d)",
    )
    webhook_connect_timeout_seconds: float = 20.0
    webhook_read_timeout_seconds: float = 20.0
    webhook_total_timeout_seconds: float = 60.0
    webhook_accept_any_2xx: bool = Field(default=False, description="success = any 2xx instead of exactly 200")
    webhook_allow_private: bool = Field(
        default=False, description="allow webhook URLs resolving to loopback/private/link-local/metadata addresses"
    )
    webhook_require_https: bool = False
    webhook_max_concurrency_per_webhook: int = 8
    webhook_log_retention_days: int = 30
    webhook_user_agent: str = "callerid-webhooks/1.0"
    webhook_secret_overlap_hours: int = Field(
        default=24, ge=0, description="after a secret rotation the old secret also signs deliveries this long"
    )
    webhook_retry_all_max_events: int = Field(
        default=10_000, ge=1, description="most failed events one 'retry all failed since' sends again (newest first)"
    )

    # --- engagement: Call Me Back, surveys, log exports (SPEC §5.10, §5.11, §9.3) ---------------------------
    export_link_ttl_seconds: int = Field(default=600, description="CMB/UF download links expire after this")
    cmb_slot_skew_seconds: int = Field(
        default=300, description="a picked slot that ended less than this ago is still accepted (phone clock lag)"
    )
    cmb_slot_horizon_days: int = Field(default=90, description="a picked slot may start at most this far ahead")

    # --- outgoing e-mail (webhook failure notices); without smtp_host mails go to the outbox table -------
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "callerid@localhost"
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = 30.0

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: str) -> str:
        from callerid.webhooks.schedule import parse_schedule

        parse_schedule(value)  # raises ValueError with the bad part named
        return value

    @field_validator(
        "device_codes_per_number",
        "device_codes_per_address",
        "device_code_failures_per_number",
        "device_code_failures_per_address",
    )
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"not a rate limit: {value!r} (e.g. 5/hour)") from None
        return value

    @field_validator("sms_code_message")
    @classmethod
    def _check_sms_message(cls, value: str) -> str:
        if "{code}" not in value:
            raise ValueError("must contain {code}")
        return value

    @field_validator("min_app_version")
    @classmethod
    def _check_min_app_version(cls, value: str) -> str:
        from packaging.version import InvalidVersion, Version

        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"not a version: {value!r} (e.g. 1.10.0)") from None
        return value

    @field_validator(
        "redis_url",
        "public_base_url",
        "smtp_host",
        "smtp_user",
        "smtp_password",
        "secret_key",
        "metrics_token",
        "sms_webhook_url",
        "sms_webhook_secret",
        "logo_s3_bucket",
        "logo_s3_endpoint_url",
        "logo_s3_region",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.logo_store == "s3" and not self.logo_s3_bucket:
            raise ValueError("CALLERID_LOGO_STORE=s3 needs CALLERID_LOGO_S3_BUCKET")
        return self

    @cached_property
    def base_url(self) -> str:
        """The absolute base of links we hand out (logos, downloads, console links in e-mails)."""
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @cached_property
    def embedded(self) -> bool:
        """The embedded default (a SQLite file, one machine): where conveniences that production must refuse are
        allowed (an SMS outbox instead of a gateway, a generated key file, /metrics without a token)."""
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
