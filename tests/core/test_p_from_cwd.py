"""``fuzzkit -p my_variant`` finds ``my_variant.py`` in the folder it runs in, as the README
tells a plugin author to try a variant before packaging it, with no PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VARIANT = '''
from fuzzkit import Cpu, Machine, Replace, Steps, hookimpl


def flush_tlb_before_set(m: Machine, cpu: Cpu, vpage: int) -> Steps:
    yield from m.k.flush_tlb_kernel_range(m, cpu, vpage, vpage + 1)


@hookimpl
def fuzzkit_replace_primitives(replace: Replace) -> None:
    replace("flush_tlb_before_set", flush_tlb_before_set, reason="flush on every arch")
'''


def test_the_fuzzkit_script_imports_a_variant_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "my_variant.py").write_text(VARIANT)
    script = Path(sys.executable).parent / "fuzzkit"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(script), "-p", "my_variant", "plugins", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert plugins["my_variant"]["registered"]["replaces"] == ["flush_tlb_before_set: flush on every arch"]
