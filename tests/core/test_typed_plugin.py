"""mypy holds a typed plugin to the contract: a misspelt primitive, a wrong call of one or a
registration with a wrong keyword fails type-checking, and the corrected plugin passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fuzzkit

#: Where the fuzzkit package lives: an editable install reaches it through an import hook,
#: which mypy does not follow.
SOURCE = Path(fuzzkit.__file__).resolve().parent.parent

PLUGIN = '''
from fuzzkit import Cpu, Machine, RegisterPrimitive, Replace, Steps, hookimpl


def apply_range_clear_cb(m: Machine, cpu: Cpu, arena: object, vpage: int) -> Steps:
    old = yield from m.k.{clear}(m, cpu, vpage)
    return m.page_of(old)


def scratch_aware_flush(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    yield from m.k.flush_tlb_kernel_range(m, cpu, vpage{hi})


@hookimpl
def fuzzkit_replace_primitives(replace: Replace) -> None:
    replace("apply_range_clear_cb", apply_range_clear_cb, {reason}="no scratch skip")
    replace("flush_tlb_before_set", scratch_aware_flush, reason="always flush")
'''

RIGHT = {"clear": "ptep_get_and_clear", "hi": ", vpage + 1", "reason": "reason"}


def mypy(tmp_path: Path, **fields: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "my_variant.py"
    module.write_text(PLUGIN.format(**{**RIGHT, **fields}))
    # As in a plugin's own project: strict for the plugin, fuzzkit a checked dependency whose
    # internals are not the plugin's business (an installed fuzzkit is typed by py.typed).
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\n[mypy-fuzzkit.*]\nignore_errors = True\n"
        "[mypy-atheris.*]\nignore_missing_imports = True\n"
    )
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), str(module)]
    cmd += ["--cache-dir", str(tmp_path / ".cache")]
    env = {**os.environ, "MYPYPATH": str(SOURCE)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy")


def test_the_correct_plugin_passes_mypy_strict(cache: Path) -> None:
    done = mypy(cache)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"clear": "ptep_get_and_clar"}, '"Primitives" has no attribute "ptep_get_and_clar"'),
        ({"hi": ""}, 'Too few arguments for "flush_tlb_kernel_range"'),
        ({"reason": "why"}, 'Unexpected keyword argument "why"'),
    ],
)
def test_a_mistake_in_a_typed_plugin_fails_mypy(cache: Path, fields: dict[str, str], error: str) -> None:
    done = mypy(cache, **fields)
    assert done.returncode == 1
    assert error in done.stdout, done.stdout
