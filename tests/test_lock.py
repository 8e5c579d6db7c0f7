"""pyproject.toml and the locks agree, and the venv holds what the lock holds.

locks/realtalk.txt is `uv pip compile --universal --generate-hashes` of pyproject.toml with the
`embedded` and `dev` extras (locks/llm-large.txt adds `llm-large`); `make run` and `make test`
install it with `uv pip sync`. These checks read only local files, so they fail the same way
everywhere: a dependency added or re-ranged in pyproject.toml without `make lock` is named here.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "locks" / "realtalk.txt"
LOCK_LARGE = ROOT / "locks" / "llm-large.txt"
FIX = "run `make lock` and commit locks/"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: int
    line: int
    direct: bool
    """uv's annotation says pyproject.toml asked for it (``# via realtalk (pyproject.toml)``)."""

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> dict[str, list[Pin]]:
    """The lock's pins by canonical name (a universal lock may pin one name per marker range).

    An entry is a ``name==version ; marker \\`` line and its ``--hash=`` continuation lines."""
    pins: dict[str, list[Pin]] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+))?", line)
        if not match:
            continue
        name, version, marker = match.groups()
        hashes, direct = 0, False
        for following in lines[number:]:
            if following.strip().startswith("--hash=sha256:"):
                hashes += 1
            elif following.startswith("    #"):  # the "via" annotation
                direct = direct or "realtalk (pyproject.toml)" in following
            else:
                break
        pin = Pin(
            canonicalize_name(name),
            version,
            Marker(marker.strip()) if marker else None,
            hashes,
            number,
            direct,
        )
        pins.setdefault(pin.name, []).append(pin)
    return pins


def pyproject_requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"]]
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


def applicable(pins: list[Pin]) -> Pin | None:
    live = [p for p in pins if p.applies()]
    assert len(live) <= 1, f"{pins[0].name} is pinned twice for this interpreter: {live}"
    return live[0] if live else None


@pytest.mark.parametrize(
    ("lock", "extras"),
    [(LOCK, ("embedded", "dev")), (LOCK_LARGE, ("embedded", "dev", "llm-large"))],
    ids=["realtalk", "llm-large"],
)
def test_every_requirement_of_pyproject_is_locked_at_a_version_it_allows(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = read_lock(lock)
    wrong = []
    for req in pyproject_requirements(*extras):
        if req.marker is not None and not req.marker.evaluate():
            continue  # e.g. audioop-lts, only for Python >= 3.13
        pin = applicable(pins.get(canonicalize_name(req.name), []))
        if pin is None:
            wrong.append(f"{req} is not in {lock.name}")
        elif not req.specifier.contains(pin.version, prereleases=True):
            wrong.append(f"{req} but {lock.name}:{pin.line} pins {pin.name}=={pin.version}")
    # ... and nothing is locked for pyproject.toml that it no longer asks for.
    asked = {canonicalize_name(r.name) for r in pyproject_requirements(*extras)}
    wrong += [
        f"{lock.name}:{p.line} locks {p.name} for pyproject.toml, which does not ask for it"
        for ps in pins.values()
        for p in ps
        if p.direct and p.name not in asked
    ]
    assert not wrong, f"pyproject.toml and the lock disagree ({FIX}):\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("lock", [LOCK, LOCK_LARGE], ids=["realtalk", "llm-large"])
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    text = lock.read_text()
    pins = read_lock(lock)
    entries = len(re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", text, re.M))
    assert entries == sum(len(p) for p in pins.values()) > 50
    unhashed = [p for ps in pins.values() for p in ps if p.hashes == 0]
    assert not unhashed, f"pins without hashes ({FIX}): {unhashed}"
    # Nothing but exact pins: no ranges, URLs or editable paths slipped in by hand.
    stray = [
        line
        for line in text.splitlines()
        if line and not line.startswith(("#", " ")) and "==" not in line
    ]
    assert not stray, f"lines that are not exact pins in {lock.name}: {stray}"


def test_the_large_lock_is_the_main_lock_plus_the_large_weights() -> None:
    main, large = read_lock(LOCK), read_lock(LOCK_LARGE)
    differ = {
        name: (pins, large.get(name))
        for name, pins in main.items()
        if [(p.version, str(p.marker)) for p in pins]
        != [(p.version, str(p.marker)) for p in large.get(name, [])]
    }
    assert not differ, f"locks/llm-large.txt pins these differently ({FIX}): {differ}"
    extra = {name for name in large if name not in main}
    weights = {canonicalize_name(r.name) for r in pyproject_requirements("llm-large")}
    assert extra == weights - set(main), extra ^ (weights - set(main))


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    """What runs the suite was installed from the lock (`uv pip sync`), not by hand."""
    wrong = []
    for name, pins in read_lock(LOCK).items():
        pin = applicable(pins)
        if pin is None:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}=={pin.version} is locked but not installed")
            continue
        if canonicalize_name(installed) != canonicalize_name(pin.version):
            wrong.append(f"{name} {installed} is installed, the lock has {pin.version}")
    assert not wrong, (
        "this environment is not the lock's (`make test` re-syncs it with `uv pip sync`):\n  "
        + "\n  ".join(wrong)
    )


def test_the_lock_reader_reads_markers_and_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\n"
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "    # via realtalk (pyproject.toml)\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n"
        "    --hash=sha256:cc\n"
        "Plain_Name==1.0 \\\n"
        "    --hash=sha256:dd\n"
    )
    pins = read_lock(lock)
    assert [(p.version, p.hashes) for p in pins["numpy"]] == [("2.4.6", 2), ("2.5.5", 1)]
    assert pins["plain-name"][0].marker is None and pins["plain-name"][0].line == 8
    assert pins["numpy"][0].direct and not pins["plain-name"][0].direct
    assert applicable(pins["numpy"]) == pins["numpy"][0 if sys.version_info < (3, 12) else 1]
