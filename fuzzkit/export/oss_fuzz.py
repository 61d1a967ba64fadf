"""``fuzzkit export``: fuzzkit's targets as an OSS-Fuzz project or a ClusterFuzzLite setup.

Both run atheris targets built the standard Python way (``compile_python_fuzzer``, which
freezes a fuzzer with PyInstaller) in the Python base-builder image, and both look for a
binary's options, dictionary and seed corpus next to it by its name:

* ``project.yaml`` (``language: python``), ``Dockerfile``, ``build.sh``;
* per target ``<name>_fuzzer.py``, ``<name>_fuzzer.options`` (``[libfuzzer]``: ``max_len``,
  ``dict``), ``<name>_fuzzer.dict`` and ``<name>_fuzzer_seed_corpus.zip`` (the campaign
  corpus ``corpora/<target>/``, files named by their sha1);
* ``fuzzkit-targets.json``, which maps each name back to its target for ``fuzzkit import``.

The OSS-Fuzz form is a project folder (``projects/<name>/`` of an OSS-Fuzz checkout) whose
Dockerfile clones the fuzzkit repository; the ClusterFuzzLite form is ``.clusterfuzzlite/``
inside that repository, which its Dockerfile copies. Plugins are found through entry
points, which PyInstaller's import scan cannot see, so ``build.sh`` bundles their modules
and distribution metadata explicitly.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fuzzkit.engines.atheris_engine import MAX_LEN
from fuzzkit.engines.campaign import STAMP
from fuzzkit.engines.codec import CODEC_VERSION, write_dictionary
from fuzzkit.errors import ConfigError
from fuzzkit.export.target import (
    MANIFEST,
    FuzzTarget,
    distributions,
    imported_plugins,
    source_modules,
    write_manifest,
)

FORMS = ("oss-fuzz", "clusterfuzzlite")
BASE_IMAGE = "gcr.io/oss-fuzz-base/base-builder-python"
#: Where the fuzzkit source lands in the build image.
SOURCE = "$SRC/fuzzkit"


@dataclass
class Export:
    #: The folder holding project.yaml, the Dockerfile, build.sh and the targets.
    folder: Path
    targets: list[FuzzTarget]
    #: Per target, the corpus its seed zip was made from (None: no campaign corpus yet).
    corpora: dict[str, Path | None] = field(default_factory=dict)


def export(
    form: str,
    dest: Path,
    targets: Sequence[FuzzTarget],
    *,
    corpora: Path,
    repo: str | None = None,
    contact: str | None = None,
) -> Export:
    """Write the ``form`` layout for ``targets`` under ``dest`` (for ClusterFuzzLite,
    ``dest`` is the repository and the files go in ``dest/.clusterfuzzlite``)."""
    if form not in FORMS:
        raise ConfigError(f"export form {form!r}: expected one of {', '.join(FORMS)}")
    if form == "oss-fuzz" and not repo:
        raise ConfigError("export oss-fuzz: --repo URL is needed: the OSS-Fuzz build clones fuzzkit from it")
    folder = dest / ".clusterfuzzlite" if form == "clusterfuzzlite" else dest
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: not a directory")
    # Everything that can be refused is checked before the first file is written.
    done = Export(folder, [])
    modules: set[str] = set()
    dists: set[str] = set()
    seeds: dict[str, dict[str, bytes]] = {}
    for target in targets:
        session, kernel, _ = target.load()
        imported = imported_plugins(session.registry)
        if imported:
            raise ConfigError(
                f"-p {imported[0]}: a plugin loaded as a module cannot be installed by an OSS-Fuzz "
                f"build; package it (entry-point group 'fuzzkit') and install it"
            )
        target.op_table = kernel.fingerprint
        modules.update(source_modules(session.registry))
        dists.update(distributions(session.registry))
        corpus = corpora / target.campaign_target.name
        seeds[target.name] = corpus_inputs(corpus, kernel.fingerprint)
        done.corpora[target.name] = corpus if corpus.is_dir() else None
        done.targets.append(target)
    folder.mkdir(parents=True, exist_ok=True)
    for target in done.targets:
        _, _, codec = target.load()
        (folder / f"{target.fuzzer}.py").write_text(fuzzer_source(target))
        write_dictionary(codec, str(folder / f"{target.fuzzer}.dict"))
        (folder / f"{target.fuzzer}.options").write_text(
            f"[libfuzzer]\nmax_len = {MAX_LEN}\ndict = {target.fuzzer}.dict\n"
        )
        seed_zip(seeds[target.name], folder / f"{target.fuzzer}_seed_corpus.zip")
    write_manifest(folder, done.targets)
    targets_dir = f"{SOURCE}/.clusterfuzzlite" if form == "clusterfuzzlite" else "$SRC/fuzzkit-targets"
    (folder / "project.yaml").write_text(project_yaml(form, repo, contact))
    (folder / "Dockerfile").write_text(dockerfile(form, repo or "", targets_dir))
    build = folder / "build.sh"
    build.write_text(build_sh(targets_dir, sorted(modules), sorted(dists - {"fuzzkit"})))
    build.chmod(0o755)
    return done


def corpus_inputs(corpus: Path, op_table: str) -> dict[str, bytes]:
    """The inputs of a campaign corpus by their sha1 (as libFuzzer names what it keeps); its
    stamp must name ``op_table``. None yet: no inputs."""
    inputs: dict[str, bytes] = {}
    if not corpus.is_dir():
        return inputs
    stamp = corpus / STAMP
    try:
        doc = json.loads(stamp.read_text())
        have, codec = doc.get("op_table"), doc.get("codec")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{stamp}: no readable corpus stamp ({exc}): cannot tell what its inputs mean"
        ) from exc
    if have != op_table or codec != CODEC_VERSION:
        raise ConfigError(
            f"{corpus}: corpus was made with op table {have} and codec {codec}, the target has "
            f"{op_table} and codec {CODEC_VERSION}: its inputs would decode to other programs; "
            f"pass another --corpus"
        )
    for path in sorted(corpus.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in (STAMP, "fuzzkit.dict"):
            data = path.read_bytes()
            inputs[hashlib.sha1(data).hexdigest()] = data
    return inputs


def seed_zip(inputs: dict[str, bytes], out: Path) -> None:
    """A seed corpus zip; fixed timestamps, so one corpus always gives the same bytes."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(inputs):
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), inputs[name])


def fuzzer_source(target: FuzzTarget) -> str:
    what = [f"{target.arch}, revision {target.revision}, {target.cpus} CPU{'s' if target.cpus > 1 else ''}"]
    if target.ops:
        what.append(f"ops {' '.join(target.ops)}")
    if target.plugins:
        what.append(f"plugins {' '.join(target.plugins)}")
    return f'''#!/usr/bin/env python3
"""fuzzkit target {target.name}: {"; ".join(what)}.

Written by `fuzzkit export`. build.sh freezes it with compile_python_fuzzer; OSS-Fuzz and
ClusterFuzzLite then run it as any atheris target. By hand:

    python3 {target.fuzzer}.py -dict={target.fuzzer}.dict -max_len={MAX_LEN} CORPUS_DIR

fuzzkit's codec turns every input into a valid program of this target. A finding raises
fuzzkit.KernelModelBug, whose message begins with the bug title; an exception out of plugin
code raises fuzzkit.PluginCrash. `fuzzkit import TESTCASE --target {target.name}
--manifest {MANIFEST}` turns a crashing input back into a fuzzkit program.
"""

import sys

import atheris

import fuzzkit

TARGET = fuzzkit.FuzzTarget(
    arch={target.arch!r},
    revision={target.revision!r},
    cpus={target.cpus!r},
    plugins={target.plugins!r},
    ops={target.ops!r},
    op_table={target.op_table!r},
    autoload={target.autoload!r},
)


def TestOneInput(data: bytes) -> None:
    TARGET.run(data)


def main() -> None:
    TARGET.load(atheris)  # plugins, the op table check, coverage of the kernel paths
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
'''


def project_yaml(form: str, repo: str | None, contact: str | None) -> str:
    lines = [f"# Written by `fuzzkit export {form}`.", "language: python"]
    if form == "oss-fuzz":
        lines += [f"homepage: {json.dumps(repo)}", f"main_repo: {json.dumps(repo)}"]
        if contact:
            lines.append(f"primary_contact: {json.dumps(contact)}")
        lines += ["fuzzing_engines:", "  - libfuzzer"]
    lines += ["sanitizers:", "  - address", "  - undefined"]
    return "\n".join(lines) + "\n"


def dockerfile(form: str, repo: str, targets_dir: str) -> str:
    head = [f"# Written by `fuzzkit export {form}`.", f"FROM {BASE_IMAGE}"]
    if form == "clusterfuzzlite":
        body = [f"COPY . {SOURCE}", "COPY .clusterfuzzlite/build.sh $SRC/"]
    else:
        body = [
            f"RUN git clone --depth 1 {repo} {SOURCE}",
            "COPY build.sh $SRC/",
            f"COPY {MANIFEST} *_fuzzer.py *_fuzzer.options *_fuzzer.dict *_fuzzer_seed_corpus.zip "
            f"{targets_dir}/",
        ]
    return "\n".join([*head, *body, f"WORKDIR {SOURCE}"]) + "\n"


def build_sh(targets_dir: str, modules: Sequence[str], other_dists: Sequence[str]) -> str:
    bundle = ["--copy-metadata fuzzkit", "--collect-submodules fuzzkit"]
    bundle += [f"--copy-metadata {shlex.quote(d)}" for d in other_dists]
    bundle += [f"--collect-submodules {shlex.quote(m)}" for m in modules]
    lines = [
        "#!/bin/bash -eu",
        "# Written by `fuzzkit export`: installs fuzzkit and its plugins, then builds each target",
        "# the standard Python way and puts its options, dictionary and seed corpus beside it.",
        f"targets={targets_dir}",
        "pip3 install .",
    ]
    lines += [f"pip3 install {shlex.quote(d)}" for d in other_dists]
    lines += [
        'for fuzzer in "$targets"/*_fuzzer.py; do',
        # Plugins load through entry points: their modules and metadata are bundled by name.
        f'  compile_python_fuzzer "$fuzzer" {" ".join(bundle)}',
        "done",
        'cp "$targets"/*_fuzzer.options "$targets"/*_fuzzer.dict "$targets"/*_fuzzer_seed_corpus.zip "$OUT"/',
    ]
    return "\n".join(lines) + "\n"
