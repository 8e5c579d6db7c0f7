"""Settings from the environment, one-line errors, and the generated standard key."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from realtalk.config import ConfigError, ensure_api_key, load_settings, mask_secret


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.engine == "embedded"
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.cors_origins == []
    assert settings.turn_detection == "server_vad"
    assert settings.input_transcription is True


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REALTALK_VOICE=ash\nREALTALK_PORT=9001\n")
    monkeypatch.setenv("REALTALK_ENGINE", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("REALTALK_CORS_ORIGINS", "https://a.example, https://b.example/")
    settings = load_settings()
    assert settings.engine == "openai"
    assert settings.voice == "ash" and settings.port == 9001
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-env"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("REALTALK_ENGINE", "azure", "REALTALK_ENGINE"),
        ("REALTALK_PORT", "eighty", "REALTALK_PORT"),
        ("REALTALK_PORT", "70000", "REALTALK_PORT"),
        ("REALTALK_CORS_ORIGINS", "app.example.com", "REALTALK_CORS_ORIGINS"),
        ("REALTALK_MINT_RATE_LIMIT", "lots", "REALTALK_MINT_RATE_LIMIT"),
        ("REALTALK_REDIS_URL", "localhost:6379", "REALTALK_REDIS_URL"),
        ("REALTALK_VAD_THRESHOLD", "1.5", "REALTALK_VAD_THRESHOLD"),
        ("REALTALK_OPENAI_BASE_URL", "ftp://x", "REALTALK_OPENAI_BASE_URL"),
        ("REALTALK_INPUT_TRANSCRIPTION", "maybe", "REALTALK_INPUT_TRANSCRIPTION"),
    ],
)
def test_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"invalid {named}:")
    assert "\n" not in message


def test_cli_fails_at_start_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "realtalk", "serve"],
        env={"REALTALK_ENGINE": "azure", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "realtalk: invalid REALTALK_ENGINE: Input should be 'embedded' or 'openai'"
    ]


def test_generated_api_key_is_stored_0600_and_reused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    key, path = ensure_api_key(settings)
    assert path == tmp_path / "data" / "api_key"
    assert key.startswith("rt_") and len(key) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _ = ensure_api_key(settings)
    assert again == key


def test_configured_api_key_wins(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, api_key="rt_configured_key_abcdefghij")
    assert ensure_api_key(settings) == ("rt_configured_key_abcdefghij", None)
    assert not (tmp_path / "api_key").exists()


def test_mask_secret_never_shows_the_whole_key() -> None:
    key = "rt_abcdefghijklmnopqrstuvwxyz0123456789"
    masked = mask_secret(key)
    assert masked.startswith("rt_ab") and masked.endswith("89")
    assert len(masked) < 10
    assert mask_secret("short") == "****"
