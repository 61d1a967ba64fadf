"""``fuzzkit export`` and ``fuzzkit import``: fuzzkit's targets as OSS-Fuzz / ClusterFuzzLite
projects, run the way those systems run a built Python target, and a crashing input back
into a program file (DESIGN principle 11)."""

from __future__ import annotations

import ast
import configparser
import hashlib
import importlib.util
import os
import stat
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import pytest
import yaml

from fuzzkit import FuzzTarget, KernelModelBug, PluginCrash, load_registry
from fuzzkit.cli import main
from fuzzkit.engines.campaign import prepare_corpus
from fuzzkit.engines.codec import Codec
from fuzzkit.errors import ConfigError
from fuzzkit.export.oss_fuzz import export
from fuzzkit.export.target import MANIFEST, NAME, find_target, read_manifest
from fuzzkit.program import OpCall, Program, load
from fuzzkit.runner import Session
from fuzzkit.triage import BugStore

UNALLOCATABLE = "I16 best-fit allocation failed while free space exists in arena.alloc (x86, merged)"
#: The arena's plugin set, as the engines' tests search for this bug with.
ARENA_ONLY = ("no:scx", "no:struct_ops")
REPO = "https://git.example/fuzzkit.git"
CRASHING = "export.crashing_clear:crashing"
needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris has no wheel here"
)


def arena_target(revision: str = "merged", arch: str = "x86", cpus: int = 1) -> FuzzTarget:
    return FuzzTarget(arch, revision, cpus, ARENA_ONLY)


def grown_corpus(corpora: Path, target: FuzzTarget, inputs: list[bytes]) -> Path:
    """A campaign corpus as the atheris engine leaves it: a stamp, a dictionary, inputs."""
    kernel = FuzzTarget(target.arch, target.revision, target.cpus, target.plugins).load()[1]
    folder = corpora / target.campaign_target.name
    prepare_corpus(folder, kernel)
    (folder / "fuzzkit.dict").write_text("# not an input\n")
    for data in inputs:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return folder


# -- the layout --------------------------------------------------------------------------------


def test_oss_fuzz_layout_names_parse_and_seed_corpus(tmp_path: Path) -> None:
    inputs = [b"\x00\x00", b"\x01\x00\x05", b"\x00\x00\x02\x00\x03\x00"]
    grown_corpus(tmp_path / "corpora", arena_target("fixed"), inputs)
    targets = [arena_target(rev, arch) for arch in ("x86", "arm64") for rev in ("merged", "fixed")]
    done = export("oss-fuzz", tmp_path / "fuzzkit", targets, corpora=tmp_path / "corpora", repo=REPO)
    folder = done.folder

    names = sorted(t.fuzzer for t in done.targets)
    assert names == sorted(
        f"{a}-{r}-1cpu-no_scx-no_struct_ops_fuzzer" for a in ("x86", "arm64") for r in ("merged", "fixed")
    )
    assert all(NAME.fullmatch(n) for n in names)
    per_target = {f"{n}{ext}" for n in names for ext in (".py", ".options", ".dict", "_seed_corpus.zip")}
    assert {p.name for p in folder.iterdir()} == per_target | {
        "project.yaml",
        "Dockerfile",
        "build.sh",
        MANIFEST,
    }

    project = yaml.safe_load((folder / "project.yaml").read_text())
    assert project["language"] == "python" and project["main_repo"] == REPO
    assert project["fuzzing_engines"] == ["libfuzzer"]
    docker = (folder / "Dockerfile").read_text().splitlines()
    assert docker[1] == "FROM gcr.io/oss-fuzz-base/base-builder-python"
    assert f"RUN git clone --depth 1 {REPO} $SRC/fuzzkit" in docker
    build = folder / "build.sh"
    assert build.stat().st_mode & stat.S_IXUSR
    assert 'compile_python_fuzzer "$fuzzer"' in build.read_text()
    assert "--collect-submodules fuzzkit_arena" in build.read_text()

    for name in names:
        options = configparser.ConfigParser()
        options.read(folder / f"{name}.options")
        assert options.sections() == ["libfuzzer"]
        assert options["libfuzzer"]["max_len"] == "4096"
        assert options["libfuzzer"]["dict"] == f"{name}.dict"
        entries = [
            line for line in (folder / f"{name}.dict").read_text().splitlines() if not line.startswith("#")
        ]
        assert entries and all(line.startswith('"') and line.endswith('"') for line in entries)
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert imported == {"sys", "atheris", "fuzzkit"}, "a target uses fuzzkit's public API only"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "TestOneInput" for n in tree.body)

    with zipfile.ZipFile(folder / "x86-fixed-1cpu-no_scx-no_struct_ops_fuzzer_seed_corpus.zip") as zf:
        assert sorted(zf.namelist()) == sorted(hashlib.sha1(d).hexdigest() for d in inputs)
        assert sorted(zf.read(n) for n in zf.namelist()) == sorted(inputs)
    with zipfile.ZipFile(folder / "x86-merged-1cpu-no_scx-no_struct_ops_fuzzer_seed_corpus.zip") as zf:
        assert zf.namelist() == [], "no campaign corpus yet: an empty seed corpus"
    assert done.corpora["x86-merged-1cpu-no_scx-no_struct_ops"] is None

    for target in targets:
        back = find_target(target.fuzzer, folder, ())
        assert (back.arch, back.revision, back.cpus, back.plugins, back.ops) == (
            target.arch,
            target.revision,
            target.cpus,
            ARENA_ONLY,
            (),
        )
        assert back.op_table == target.load()[1].fingerprint


def test_clusterfuzzlite_layout_copies_the_repository(tmp_path: Path) -> None:
    focused = FuzzTarget("x86", "fixed", 2, (), ("scx.alloc",))
    done = export("clusterfuzzlite", tmp_path, [focused], corpora=tmp_path / "corpora")
    assert done.folder == tmp_path / ".clusterfuzzlite"
    assert focused.fuzzer == "x86-fixed-2cpu-scx_alloc_fuzzer"
    assert yaml.safe_load((done.folder / "project.yaml").read_text())["language"] == "python"
    docker = (done.folder / "Dockerfile").read_text()
    assert "COPY . $SRC/fuzzkit" in docker and "git clone" not in docker
    assert "targets=$SRC/fuzzkit/.clusterfuzzlite" in (done.folder / "build.sh").read_text()
    back = find_target(focused.name, done.folder / MANIFEST, ())
    assert back.ops == ("scx.alloc",) and back.cpus == 2
    # A second export into the same folder adds its targets to the manifest.
    export("clusterfuzzlite", tmp_path, [FuzzTarget("arm64", "merged", 1)], corpora=tmp_path / "corpora")
    assert sorted(read_manifest(done.folder / MANIFEST)) == ["arm64-merged-1cpu", "x86-fixed-2cpu-scx_alloc"]


def test_export_refuses_what_a_build_elsewhere_would_misread(tmp_path: Path) -> None:
    # A corpus grown with another op table would be other programs, byte for byte.
    grown_corpus(tmp_path / "corpora", FuzzTarget("x86", "fixed", 1), [b"\x00"])
    with pytest.raises(ConfigError, match="corpus was made with op table"):
        export("oss-fuzz", tmp_path / "out", [arena_target("fixed")], corpora=tmp_path / "corpora", repo=REPO)
    # A plugin loaded as a module cannot be installed by the build.
    with pytest.raises(ConfigError, match="loaded as a module"):
        export(
            "oss-fuzz",
            tmp_path / "out",
            [FuzzTarget("x86", "fixed", 1, (CRASHING,))],
            corpora=tmp_path,
            repo=REPO,
        )
    with pytest.raises(ConfigError, match="--repo URL"):
        export("oss-fuzz", tmp_path / "out", [arena_target()], corpora=tmp_path)
    assert not (tmp_path / "out").exists(), "a refused export writes nothing"


def test_export_command_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "oss-fuzz", str(tmp_path / "out"), "--arch", "x86"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--repo URL" in err


def test_a_target_name_maps_back_without_a_manifest_only_when_plain() -> None:
    plain = find_target("arm64-fixed-2cpu_fuzzer", None, ("no:scx",))
    assert (plain.arch, plain.revision, plain.cpus, plain.plugins) == ("arm64", "fixed", 2, ("no:scx",))
    with pytest.raises(ConfigError, match="--manifest"):
        find_target("x86-fixed-2cpu-scx_alloc", None, ())
    with pytest.raises(ConfigError, match="A-Z, a-z, 0-9"):
        find_target("x86 fixed", None, ())


# -- running a target as OSS-Fuzz does, and its crash back ---------------------------------


@needs_atheris
def test_R4_merged_target_crashes_with_the_bug_title_and_imports_back(tmp_path: Path) -> None:
    target = arena_target("merged")
    done = export("oss-fuzz", tmp_path / "project", [target], corpora=tmp_path / "corpora", repo=REPO)
    folder, fuzzer = done.folder, target.fuzzer
    options = configparser.ConfigParser()
    options.read(folder / f"{fuzzer}.options")
    seeds = tmp_path / "seeds"
    with zipfile.ZipFile(folder / f"{fuzzer}_seed_corpus.zip") as zf:
        zf.extractall(seeds)
    seeds.mkdir(exist_ok=True)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # As the runner runs a built Python target: libFuzzer flags from the .options file, a
    # fixed seed and run count, the seed corpus folder. The seed's search finds the merged
    # revision's unallocatable slot after about 7,500 executions.
    cmd = [
        sys.executable,
        f"{fuzzer}.py",
        "-seed=5",
        "-runs=20000",
        *(f"-{k}={v}" for k, v in options["libfuzzer"].items()),
        f"-artifact_prefix={artifacts}/",
        str(seeds),
    ]
    run = subprocess.run(
        cmd,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-2000:]
    assert f"KernelModelBug: {UNALLOCATABLE}" in output
    assert f", in {UNALLOCATABLE}\n" in output, "the raising frame is named after the bug title"
    [crash] = list(artifacts.glob("crash-*"))

    reports = tmp_path / "reports"
    argv = ["import", str(crash), "--target", fuzzer, "--manifest", str(folder), "--reports", str(reports)]
    assert main(argv) == 1
    program = load(Path(f"{crash}.json"))
    assert program.description.startswith(UNALLOCATABLE)
    replayed = Session(load_registry(disable=["scx", "struct_ops"])).run(program)
    assert replayed.finding is not None and replayed.finding.title == UNALLOCATABLE
    assert [b.title for b in BugStore.load(reports).bugs] == [UNALLOCATABLE]


def merged_unallocatable_input(target: FuzzTarget) -> bytes:
    """The bug's three ops: a kernel fault scratches free slot 0, a best-fit allocation of
    one page then finds no room (corpora/examples/merged_unallocatable_slot.json)."""
    program = load(Path(__file__).parents[2] / "corpora" / "examples" / "merged_unallocatable_slot.json")
    _, _, codec = target.load()
    return codec.encode(program)


def test_run_raises_the_finding_from_a_frame_named_after_its_title() -> None:
    target = FuzzTarget("x86", "merged", 1)
    data = merged_unallocatable_input(target)
    with pytest.raises(KernelModelBug) as err:
        target.run(data)
    assert str(err.value).startswith(UNALLOCATABLE)
    assert traceback.extract_tb(err.value.__traceback__)[-1].name == UNALLOCATABLE
    assert err.value.program.ops and err.value.finding.title == UNALLOCATABLE
    target.run(b"")  # an empty program is clean: no exception


def test_plugin_exceptions_are_the_plugins_never_a_kernel_bug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = FuzzTarget("x86", "fixed", 1, (CRASHING,))
    program = Program(
        arch="x86",
        revision="fixed",
        cpus=1,
        ops=[
            OpCall(0, "arena.create", {"max_entries": 16}),
            OpCall(0, "arena.alloc", {"arena": 0, "addr": "fixed", "pgoff": 2}),
            OpCall(0, "arena.free", {"arena": 0, "pgoff": 2}),
        ],
    )
    data = Codec(target.load()[1]).encode(program)
    with pytest.raises(PluginCrash) as err:
        target.run(data)
    crash = err.value
    assert not isinstance(crash, AssertionError), "never a KernelModelBug"
    assert (
        crash.title
        == f"plugin '{CRASHING}' (distribution (imported)) raised LookupError in clear_cb_that_raises"
    )
    assert traceback.extract_tb(crash.__traceback__)[-1].name == crash.title
    assert isinstance(crash.__cause__, LookupError)

    testcase = tmp_path / "crash-plugin"
    testcase.write_bytes(data)
    argv = ["-p", CRASHING, "import", str(testcase), "--target", "x86-fixed-1cpu", "--reports", str(tmp_path)]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert f"PLUGIN FAILURE: {crash.title}" in out
    assert [c.op for c in load(Path(f"{testcase}.json")).ops] == ["arena.create", "arena.alloc", "arena.free"]
    assert not (tmp_path / "bugs.json").exists(), "a plugin failure is not filed as a bug"


def test_import_of_a_clean_testcase_exits_0_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    testcase = tmp_path / "testcase"
    testcase.write_bytes(b"\x00\x00")
    argv = ["import", str(testcase), "--target", "x86-fixed-1cpu", "--no-triage"]
    assert main(argv) == 0
    assert "clean" in capsys.readouterr().out
    assert load(Path(f"{testcase}.json")).ops
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
