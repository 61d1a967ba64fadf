"""``fuzzkit new-plugin``: each kind scaffolds a package that installs with pip into a fresh
venv, loads through its entry point and passes its generated test, which replays a program
with and without the plugin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from venvs import fresh_venv, pip_install

from fuzzkit.cli import main


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("venv") / "v")


@pytest.mark.parametrize("kind", ["variant", "subsystem", "arch"])
def test_the_scaffolded_package_installs_and_passes_its_test(
    kind: str, venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"my_{kind}"
    assert main(["new-plugin", name, "--kind", kind, "--dir", str(tmp_path)]) == 0
    root = tmp_path / name
    assert f"wrote {root}" in capsys.readouterr().out
    pyproject = (root / "pyproject.toml").read_text()
    assert f'[project.entry-points.fuzzkit]\n{name} = "{name}"' in pyproject
    assert (root / name / "py.typed").is_file()
    pip_install(venv, root)
    done = subprocess.run(
        [str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["Bad-Name", "--kind", "variant"], "plugin name 'Bad-Name'"),
        (["fuzzkit_x", "--kind", "arch"], "not starting with 'fuzzkit'"),
    ],
)
def test_a_bad_name_is_one_line_and_exit_2(
    args: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new-plugin", *args, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "mine", "--kind", "variant", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]
