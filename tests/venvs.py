"""Fresh virtual environments for tests that install packages the way users do.

A fresh venv gets no packages of its own beyond what a test installs; the dependencies
(pluggy, hypothesis, pytest, and setuptools to build with) come from the test's own
environment through a ``.pth`` file, so installing needs neither build isolation nor the
network. pip is the test environment's, pointed at the new interpreter (``pip --python``).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_venv(where: Path) -> Path:
    """A new venv at ``where`` that sees this environment's packages after its own; returns
    its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Executed at start-up: our site directory is added after the venv's own, with its .pth
    # files processed, so the venv's own installs win.
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "_test_deps.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def pip_install(python: Path, *what: str | Path) -> None:
    """``pip install`` into ``python``'s venv, without dependencies or build isolation."""
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    cmd += ["--no-deps", "--no-build-isolation", "--disable-pip-version-check", *map(str, what)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
