"""Beyond one machine: fuzzkit targets for OSS-Fuzz and ClusterFuzzLite, and back.

* ``target``: one exported libFuzzer target, what its ``TestOneInput`` raises, and the
  manifest mapping target names back to targets (re-exported here and in ``fuzzkit``,
  as generated fuzzers use it);
* ``oss_fuzz``: ``fuzzkit export``, the project layout (``project.yaml``, ``Dockerfile``,
  ``build.sh``) and per target the fuzzer, options, dictionary and seed corpus;
* ``testcase``: ``fuzzkit import``, a ClusterFuzz testcase (raw bytes) to a program file.
"""

from fuzzkit.export.target import (
    FUZZER_SUFFIX,
    MANIFEST,
    FuzzTarget,
    KernelModelBug,
    PluginCrash,
    find_target,
    read_manifest,
    write_manifest,
)

__all__ = [
    "FUZZER_SUFFIX",
    "MANIFEST",
    "FuzzTarget",
    "KernelModelBug",
    "PluginCrash",
    "find_target",
    "read_manifest",
    "write_manifest",
]
