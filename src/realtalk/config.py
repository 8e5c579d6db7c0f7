"""Process-wide settings, read from ``REALTALK_*`` environment variables and ``.env``.

Invalid values stop the server at start with one line naming the variable
(:func:`load_settings`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import ssl
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "realtalk"


def _default_model_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "realtalk" / "models"


class Settings(BaseSettings):
    """realtalk's configuration. Every field maps to ``REALTALK_<NAME>`` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix="REALTALK_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    engine: Literal["embedded", "openai"] = "embedded"
    api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "REALTALK_OPENAI_API_KEY")
    )
    openai_base_url: str = "https://api.openai.com/v1"
    openai_timeout_s: float = Field(default=10.0, gt=0, le=120)
    public_engine_url: str | None = None
    """Base URL the browser should use for the embedded engine (default: this server's /v1)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    ssl_certfile: Path | None = None
    """PEM certificate (chain) for TLS: ``realtalk serve`` answers https:// and wss://
    (``realtalk dev-cert`` makes one for development). Needs ``ssl_keyfile``."""
    ssl_keyfile: Path | None = None
    """The certificate's private key (PEM, not encrypted)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mint_rate_limit: str = "20/minute"
    redis_url: str | None = None
    """Shared state for several instances (keys, call registry, mint rate limit); None: this
    process alone, in memory."""
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or networks of reverse proxies whose ``X-Forwarded-For``/``-Proto`` are
    believed (empty: none; a client's own forwarding headers are ignored)."""

    model: str | None = None
    """Model name sent to the engine (default: realtalk-local, or gpt-realtime for openai)."""
    instructions: str = (
        "You are a helpful, friendly voice assistant for an online shop. Keep answers short: "
        "one or two sentences, plain words, no lists or markdown. Use lookup_order for the "
        "status of an order, cancel_order to cancel one, list_recent_orders for what a customer "
        "(by email) ordered, get_time for the time somewhere, and get_weather for the weather in "
        "a city. For anything else, answer directly without a tool."
    )
    voice: str = "alloy"
    turn_detection: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    """Sessions opened by API clients (OpenAI's default)."""
    page_turn_detection: Literal["server_vad", "semantic_vad", "none"] = "semantic_vad"
    """Sessions the app backend mints for the page: the end-of-turn model ends a finished
    question without a fixed silence window and waits through "um" (its median reply comes
    ~0.1–0.2 s after server_vad's at 500 ms on two cores: see docs/latency.md)."""
    vad_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    vad_silence_duration_ms: int = Field(default=500, ge=0, le=10_000)
    vad_prefix_padding_ms: int = Field(default=300, ge=0, le=10_000)
    input_transcription: bool = True
    transcription_model: str = "whisper-1"
    transcription_prompt: str | None = None
    """Vocabulary hint for the speech recognizer in the page's sessions (API clients set their
    own, or none). With the example tools and none set, it is told that order numbers are
    digits."""

    model_dir: Path = Field(default_factory=_default_model_dir)
    data_dir: Path = Field(default_factory=_default_data_dir)
    stt_model: str = "whisper-base"
    """A catalog id or CTranslate2 folder; with ``stt_base_url``, the remote model's name."""
    stt_base_url: str | None = None
    """An OpenAI-compatible ``/audio/transcriptions`` server (up to ``/v1``) instead of the
    local Whisper."""
    stt_api_key: SecretStr | None = None
    stt_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Remote STT: longest wait to connect or for an answer (one retry)."""
    stt_window: Literal["fit", "full"] = "fit"
    """``fit``: Whisper's encoder sees the utterance + 2 s (≥ 5 s), not a 30 s window."""
    end_of_turn_model: str = "smart-turn-v3.2"
    """semantic_vad's end-of-turn model (a catalog id or an ONNX path); ``none`` to go without
    (semantic_vad then ends turns on its eagerness's longest silence)."""
    llm_model: str = "qwen2.5-0.5b"
    """A catalog id or GGUF path; with ``llm_base_url``, the remote model's name."""
    llm_base_url: str | None = None
    """An OpenAI-compatible Chat Completions endpoint (vLLM, Ollama…) instead of the local LLM."""
    llm_api_key: SecretStr | None = None
    llm_context_tokens: int = Field(default=4096, ge=512, le=131_072)
    llm_repack: bool | None = None
    """Let llama.cpp repack weights into its CPU "extra buffer types". Unset: on when the CPU
    has AVX2 and no AMX (some VMs advertise AMX but fault on its instructions)."""
    threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 2)), ge=1, le=64)
    tts_voice: str = "joe"
    """A Piper catalog id or ONNX path; with ``tts_base_url``, the remote server's voice."""
    tts_base_url: str | None = None
    """An OpenAI-compatible ``/audio/speech`` server streaming ``pcm`` instead of Piper."""
    tts_model: str = "tts-1"
    """The remote TTS model's name (with ``tts_base_url``)."""
    tts_api_key: SecretStr | None = None
    tts_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Remote TTS: longest wait to connect or for the next bytes (one retry)."""
    ice_servers: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    """WebRTC ICE servers: a JSON list like [{"urls": ["turn:host:3478"], "username": "u",
    "credential": "p"}], or comma-separated stun:/turn: URLs. Empty by default (loopback/LAN)."""
    example_tools: bool = True
    """Offer the example tools (orders in SQLite, time, weather)."""
    tools: str | None = None
    """Your own tools: ``package.module:attribute``, a ToolRegistry, a list of tools, or a
    function taking the Settings and returning either."""
    server_tools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Tool names the engine runs itself (no browser round trip); others run in the page."""
    tool_timeout_s: float = Field(default=10.0, gt=0, le=300)
    tool_workers: int = Field(default=8, ge=1, le=256)
    """Threads for sync tools (apart from the model stages'); a call beyond them fails at once."""
    weather_url: str = "https://api.open-meteo.com"
    weather_timeout_s: float = Field(default=3.0, gt=0, le=60)
    session_max_s: int = Field(default=1800, ge=10, le=7200)
    """A session ends after this long (OpenAI: 60 min)."""
    max_sessions: int | None = Field(default=None, ge=1, le=100_000)
    """Concurrent sessions (WebSocket and WebRTC) on this instance. Unset: sized for the machine,
    min(50 × cores, (available memory − 2 GiB) / 25 MB)."""
    max_sessions_per_key: int = Field(default=4, ge=1, le=100_000)
    """Concurrent sessions opened with one ephemeral key (the standard key: max_sessions only)."""
    call_connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """A WebRTC call whose peer has not connected by then (ICE, DTLS, and the events channel
    when the offer has one) is ended."""
    header_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """A connection's request line and headers must arrive within this; else 408, closed."""
    drain_s: float = Field(default=30.0, ge=0, le=3600)
    """On SIGTERM: how long live sessions may go on (new ones are refused) before they are
    ended with a ``server_shutting_down`` error and the process exits."""
    record: Literal["off", "transcripts", "audio"] = "transcripts"
    """Conversation records in ``<data_dir>/records.sqlite3``: ``off``; ``transcripts``
    (metadata, both sides' text, tool calls, turn timings, errors); ``audio`` (also the user's
    and the agent's audio as Ogg/Opus tracks in ``<data_dir>/records-audio``)."""
    record_retention_days: int = Field(default=30, ge=1, le=36_500)
    """Records older than this are deleted (at start and every hour)."""
    metrics_public: bool = False
    """Serve ``/metrics`` without a key (for a scraper on a private network); else it needs
    the standard key as a bearer token."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object a line (time, level, logger, message, session/response ids)."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return [origin.rstrip("/") for origin in value]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        networks = []
        for proxy in value:
            try:
                networks.append(str(ipaddress.ip_network(proxy, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an IP address or network like 10.0.0.0/8"
                ) from None
        return networks

    @field_validator("server_tools", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tools")
    @classmethod
    def _check_tools_ref(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError(f"{value!r} should look like 'package.module:attribute'")
        return value

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _parse_ice(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [{"urls": [url.strip()]} for url in text.split(",") if url.strip()]
        return value

    @field_validator("ice_servers")
    @classmethod
    def _check_ice(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for server in value:
            urls = server.get("urls")
            urls = [urls] if isinstance(urls, str) else urls
            if not urls or not all(
                isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:")) for u in urls
            ):
                raise ValueError(f"{server!r}: 'urls' must be stun:, turn: or turns: URLs")
            if any(u.startswith("turn") for u in urls) and not (
                server.get("username") and server.get("credential")
            ):
                raise ValueError(f"{server!r}: a TURN server needs 'username' and 'credential'")
            server["urls"] = urls
        return value

    @field_validator("mint_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate like '20/minute'") from exc
        return value

    @field_validator(
        "openai_base_url",
        "public_engine_url",
        "llm_base_url",
        "stt_base_url",
        "tts_base_url",
        "weather_url",
    )
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("ssl_certfile", "ssl_keyfile", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ssl_certfile", "ssl_keyfile")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except FileNotFoundError:
            raise ValueError(f"{str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{str(path)!r} is a directory, not a PEM file") from None
        except OSError as exc:
            raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        return path

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        cert, key = self.ssl_certfile, self.ssl_keyfile
        if cert is None and key is None:
            return self
        if cert is None or key is None:
            given, missing = (CERTFILE, KEYFILE) if key is None else (KEYFILE, CERTFILE)
            raise ValueError(
                f"{given} is set but {missing} is not: TLS needs both the certificate and its key"
            )
        _check_tls_files(cert, key)
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
        return value or None


CERTFILE = "REALTALK_SSL_CERTFILE (--ssl-certfile)"
KEYFILE = "REALTALK_SSL_KEYFILE (--ssl-keyfile)"


def _no_password() -> str:
    raise ValueError("the key is encrypted (realtalk needs an unencrypted key file)")


def _check_tls_files(cert: Path, key: Path) -> None:
    """Raise ValueError unless ``cert`` and ``key`` load as a server's certificate and key."""
    cert_text = cert.read_bytes().decode("ascii", "replace")
    key_text = key.read_bytes().decode("ascii", "replace")
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise ValueError(f"{CERTFILE} {str(cert)!r} holds no PEM certificate")
    if "PRIVATE KEY-----" not in key_text:
        raise ValueError(f"{KEYFILE} {str(key)!r} holds no PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A callable password: an encrypted key fails here instead of prompting on a tty.
        context.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            detail = "the key is not this certificate's"
        elif isinstance(exc, ValueError):
            detail = str(exc)
        else:
            detail = f"OpenSSL could not load them ({reason or exc})"
        raise ValueError(
            f"{CERTFILE} {str(cert)!r} with {KEYFILE} {str(key)!r}: {detail}"
        ) from None


class ConfigError(Exception):
    """A setting is invalid; the message is one line that names the variable."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field == "openai_api_key":
        return "OPENAI_API_KEY"
    if field == "ssl_certfile":
        return CERTFILE
    if field == "ssl_keyfile":
        return KEYFILE
    return f"REALTALK_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise :class:`ConfigError` with one line naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        loc = first.get("loc", ())
        if not loc:  # a check across settings: its message names them
            raise ConfigError(f"invalid settings: {message}") from None
        raise ConfigError(f"invalid {_env_name(loc)}: {message}") from None


def mask_secret(value: str) -> str:
    """Show enough of a secret to recognise it, never enough to use it."""
    if len(value) <= 10:
        return "****"
    return f"{value[:5]}…{value[-2:]}"


def ensure_api_key(settings: Settings) -> tuple[str, Path | None]:
    """Return the engine's standard API key, generating and storing one on first start.

    A generated key lives in ``<data_dir>/api_key`` with mode 0600. Returns the key and the
    file it came from (``None`` when it came from the environment).
    """
    if settings.api_key is not None:
        return settings.api_key.get_secret_value(), None
    path = settings.data_dir / "api_key"
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key, path
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "rt_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key, path
