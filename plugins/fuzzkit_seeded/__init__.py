"""Seeded bugs: design variants with a known flaw, the library ``fuzzkit bench --bugs`` times
the engines against (see :mod:`fuzzkit_seeded.library`).

Each variant is a plugin object, loaded by ``-p fuzzkit_seeded.<module>:<attribute>`` like any
variant a user tries out (``fuzzkit fuzz -p fuzzkit_seeded.arena:no_tlb_flush``). The package
registers no entry point: installed, it changes nothing until a variant is named.
"""
