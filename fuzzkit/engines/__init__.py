"""Fuzzing engines over the op table: a byte codec for atheris/libFuzzer, a generated
hypothesis state machine, and the campaign plumbing they share (targets, finding sinks)."""
