"""The public API is what ``fuzzkit.__all__`` lists, nothing more or less, and the files fuzzkit
writes for others to run (regression tests, OSS-Fuzz targets) use only that API."""

from __future__ import annotations

import ast

import fuzzkit
from fuzzkit.export.oss_fuzz import fuzzer_source
from fuzzkit.export.target import FuzzTarget
from fuzzkit.triage.report import TEST_TEMPLATE

#: The public API. A change here is a change of the contract plugin authors build on.
PUBLIC = {
    # constants: page geometry, fault outcomes, the program format's default revision
    "DEFAULT_REVISION", "FIXUP", "IGNORED", "KFENCE", "OOPS", "PAGE_SHIFT", "PAGE_SIZE", "RETRY",
    # writing plugins: the arch base, domains, machine objects, the typed contract
    "Arch", "Call", "Cause", "Choice", "Cpu", "Domain", "Fault", "Frame", "Handle", "Int",
    "Machine", "Mutex", "Page", "Primitives", "Steps", "Violation",
    "RegisterArch", "RegisterRevision", "RegisterPrimitive", "RegisterFaultStage",
    "RegisterInjectionPoint", "RegisterOp", "RegisterInvariant", "Replace", "FaultStageFn",
    "PteSetCheck", "PageFreeCheck", "TlbFlushCheck", "FaultDoneCheck", "OpDoneCheck", "AccessCheck",
    "hookimpl", "replacing",
    # running: registry, kernel, choices, results, errors
    "ChoiceSource", "Finding", "Kernel", "RandomChoices", "Registry", "Replay", "RunResult",
    "load_registry", "ConfigError", "FuzzkitError", "MissingFeature", "PluginError", "ProgramError",
    # what generated files use
    "FuzzTarget", "KernelModelBug", "PluginCrash", "fuzzkit_regressions", "__version__",
}  # fmt: skip


def test_all_is_the_public_api_and_every_name_resolves() -> None:
    assert set(fuzzkit.__all__) == PUBLIC
    assert len(fuzzkit.__all__) == len(PUBLIC), "no name listed twice"
    for name in fuzzkit.__all__:
        assert getattr(fuzzkit, name) is not None, name


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("fuzzkit").joinpath("py.typed").is_file()


def fuzzkit_names(source: str) -> set[str]:
    """Every fuzzkit name a module uses: ``from fuzzkit[.x] import n`` and ``fuzzkit.n``."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fuzzkit"):
            assert node.module == "fuzzkit", f"imports the internal module {node.module}"
            used |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name == "fuzzkit" or not alias.name.startswith("fuzzkit"), alias.name
        elif isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "fuzzkit":
            used.add(node.attr)
    return used


def test_generated_regression_test_uses_only_the_public_api() -> None:
    source = TEST_TEMPLATE.format(folder="/r/bug", test="test_bug.py", titles=("I2 x",))
    used = fuzzkit_names(source)
    assert used == {"fuzzkit_regressions"}
    assert used <= PUBLIC


def test_generated_fuzz_target_uses_only_the_public_api() -> None:
    used = fuzzkit_names(fuzzer_source(FuzzTarget("x86", "fixed", 2, ("no:scx",), ("arena.*",))))
    assert "FuzzTarget" in used
    assert used <= PUBLIC
