"""A plain, non-editable ``pip install`` of fuzzkit works from any folder: the example
programs are package data, and campaign output lands in the working directory, never in the
installed package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from venvs import ROOT, fresh_venv, pip_install


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a venv with fuzzkit installed from this checkout, the package's folder)."""
    base = tmp_path_factory.mktemp("venv")
    python = fresh_venv(base / "v")
    pip_install(python, ROOT)
    # From outside the checkout: run from it, python would import ./fuzzkit first.
    show = [str(python), "-c", "import fuzzkit; print(fuzzkit.__file__)"]
    where = subprocess.run(show, capture_output=True, text=True, check=True, cwd=base).stdout.strip()
    package = Path(where).parent
    assert package.parent.name == "site-packages", f"fuzzkit imported from {package}, not the install"
    return python, package


def fuzzkit(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "fuzzkit", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if "__pycache__" not in p.parts}


def test_run_replays_the_shipped_examples_from_a_plain_folder(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    python, package = installed
    done = fuzzkit(python, tmp_path, "run")
    shipped = sorted((package / "data" / "examples").glob("*.json"))
    assert len(shipped) == len(list((ROOT / "fuzzkit" / "data" / "examples").glob("*.json"))) > 0
    assert done.returncode in (0, 1), done.stderr
    assert f"{len(shipped)} programs replayed" in done.stdout
    assert (package / "py.typed").is_file()


def test_fuzz_writes_into_the_working_directory_only(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, package = installed
    before = files_under(package)
    done = fuzzkit(python, tmp_path, "fuzz", "--engine", "hypothesis", "--runs", "5", "--seed", "1")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert (tmp_path / "corpora" / "hypothesis").is_dir()
    assert (tmp_path / "reports").is_dir()
    assert files_under(package) == before, "nothing written into the installed package"
