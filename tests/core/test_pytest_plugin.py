"""fuzzkit's pytest plugin, used from a fresh project folder as a kernel team would: the
hypothesis profiles exist at start-up, the options choose the target and the plugins, and one
line turns a reports folder, a folder of programs or a program file into test cases."""

from __future__ import annotations

import json

import pytest
from reports_helpers import BUGGY, make_reports

from fuzzkit.cli import EXAMPLES
from fuzzkit.runner import Session

PROFILE_TESTS = """
from hypothesis import settings


def test_the_profile_is_loaded():
    assert settings.default.max_examples == 60 and settings.default.derandomize
"""

STATE_MACHINE_TEST = """
from hypothesis import settings

from fuzzkit.engines.hypothesis_engine import state_machine

Arena = state_machine(arch="x86", revision="fixed", cpus=1, schedules=0)
Arena.TestCase.settings = settings(settings.default, max_examples=3, stateful_step_count=4)
TestArena = Arena.TestCase
"""


def test_hypothesis_profile_works_in_a_project_that_only_installs_fuzzkit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_profile=PROFILE_TESTS, test_machine=STATE_MACHINE_TEST)
    result = pytester.runpytest_subprocess("--hypothesis-profile=fuzzkit-ci", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    # Without the plugin the profile is unknown while pytest configures: what users saw.
    without = pytester.runpytest_subprocess(
        "--hypothesis-profile=fuzzkit-ci", "-p", "no:fuzzkit", "-p", "no:cacheprovider"
    )
    assert without.ret == pytest.ExitCode.INTERNAL_ERROR
    assert "fuzzkit-ci" in without.stderr.str() + without.stdout.str()


def test_options_choose_the_target_and_the_plugins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_target(fuzzkit_state_machine, fuzzkit_session):
            assert fuzzkit_state_machine.__name__ == "Fuzzkit_arm64_merged_2cpu"
            names = [p.name for p in fuzzkit_session.registry.plugins]
            assert "scx" not in names and "arena" in names
        """
    )
    args = ["--fuzzkit-arch=arm64", "--fuzzkit-revision=merged", "--fuzzkit-plugin=no:scx"]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(failed=1)
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--fuzzkit-arch" in help_text and "--fuzzkit-plugin" in help_text


def test_one_line_turns_a_reports_folder_into_test_cases(session: Session, pytester: pytest.Pytester) -> None:
    store = make_reports(session, pytester.path / "reports")
    pytester.makepyfile(
        test_bugs="""
        from fuzzkit.pytest_plugin import fuzzkit_regressions

        test_fuzzkit_bugs = fuzzkit_regressions("reports/")
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    for bug in store.bugs:
        assert f"test_fuzzkit_bugs[{bug.slug}] FAILED" in out
        assert f"still reproduces: {bug.title}" in out
    # The I16 needs the merged revision: on fixed it is gone; the R27 is not.
    result = pytester.runpytest("-v", "--fuzzkit-revision=fixed")
    result.assert_outcomes(passed=1, failed=1)
    assert f"test_fuzzkit_bugs[{store.bugs[0].slug}] PASSED" in result.stdout.str()


def test_a_folder_of_programs_and_a_program_file_are_test_cases(pytester: pytest.Pytester) -> None:
    clean = EXAMPLES / "scratch_install.json"
    pytester.makepyfile(
        test_programs=f"""
        from fuzzkit.pytest_plugin import fuzzkit_regressions

        test_examples = fuzzkit_regressions({str(EXAMPLES)!r})
        test_one = fuzzkit_regressions({str(clean)!r})
        test_other_title = fuzzkit_regressions({str(EXAMPLES / BUGGY[0])!r}, titles=["I1 not this one"])
        """
    )
    result = pytester.runpytest("-v")
    programs = sorted(EXAMPLES.glob("*.json"))
    result.assert_outcomes(passed=len(programs) - len(BUGGY) + 2, failed=len(BUGGY))
    out = result.stdout.str()
    for name in BUGGY:
        assert f"test_examples[{name.removesuffix('.json')}] FAILED" in out


def test_a_damaged_reports_folder_is_a_failing_case_not_a_crash(pytester: pytest.Pytester) -> None:
    (pytester.path / "reports").mkdir()
    bugs = {"fuzzkit": "bugs", "schema": 1, "bugs": [3]}
    (pytester.path / "reports" / "bugs.json").write_text(json.dumps(bugs))
    pytester.makepyfile(
        test_bugs="""
        from fuzzkit.pytest_plugin import fuzzkit_regressions

        test_fuzzkit_bugs = fuzzkit_regressions("reports")
        test_missing = fuzzkit_regressions("nowhere")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "bugs.json: bugs[0]: expected an object, got int" in out
    assert "nowhere: no such file or folder" in out
