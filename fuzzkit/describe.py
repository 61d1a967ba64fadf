"""What the loaded plugins make of fuzzkit, spelled out for a plugin author
(``fuzzkit plugins --verbose``): ops with their argument domains, primitives with their
signature and summary, the fault path of each arch, injection points, invariants and
revisions. Everything comes from the registry, so the listing is the contract in force."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fuzzkit.domains import Choice, Domain, Handle, Int
from fuzzkit.registry import Registry


def domain_text(dom: Domain) -> str:
    """A domain as a person reads it: ``int 0..4096 (default 1)``, ``one of a|b``."""
    if isinstance(dom, Int):
        default = f" (default {dom.default})" if dom.default is not None else ""
        return f"int {dom.lo}..{dom.hi}{default}"
    if isinstance(dom, Choice):
        return "one of " + "|".join(str(v) for v in dom.values)
    if isinstance(dom, Handle):
        return f"{dom.kind} handle (< {dom.limit})"
    return repr(dom)


def signature_text(fn: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(fn)).replace("'", "")
    except (TypeError, ValueError):
        return "(...)"


def describe(registry: Registry) -> dict[str, Any]:
    """The contract as JSON-able data."""
    prims: dict[str, dict[str, Any]] = {}
    for (name, revision), prim in sorted(
        registry.primitives.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        entry = prims.setdefault(
            name,
            {"kind": "primitive", "plugin": prim.plugin, "signature": signature_text(prim.fn), "summary": {}},
        )
        entry["summary"][revision or "*"] = prim.summary
    for name, stage in registry.fault_stages.items():
        prims[name] = {
            "kind": "fault stage",
            "plugin": stage.plugin,
            "signature": signature_text(stage.fn),
            "summary": {"*": stage.summary},
        }
    for name, rep in registry.replacements.items():
        prims[name]["replaced_by"] = {"plugin": rep.plugin, "reason": rep.reason, "wraps": rep.wraps}
    fault_paths = {
        arch: [
            {
                "stage": stage,
                "kinds": sorted(kinds) if kinds is not None else "all",
                "provided_by": registry.fault_stages[stage].plugin
                if stage in registry.fault_stages
                else None,
            }
            for stage, kinds in cls.fault_path
        ]
        for arch, (cls, _) in sorted(registry.arches.items())
    }
    return {
        "revisions": {
            name: {"plugin": r.plugin, "summary": r.summary} for name, r in registry.revisions.items()
        },
        "ops": {
            op.id: {
                "plugin": op.plugin,
                "summary": op.summary,
                "rules": list(op.rules),
                "creates": op.creates,
                "args": {arg: domain_text(dom) for arg, dom in op.args.items()},
            }
            for op in registry.op_table()
        },
        "primitives": dict(sorted(prims.items())),
        "fault_paths": fault_paths,
        "injection_points": {
            name: {"plugin": ip.plugin, "summary": ip.summary}
            for name, ip in sorted(registry.injection_points.items())
        },
        "invariants": {
            f"{sid}/{name}": {
                "plugin": inv.plugin,
                "summary": inv.summary,
                "events": sorted(inv.on),
                "arch": inv.arch,
            }
            for (sid, name), inv in sorted(registry.invariants.items())
        },
    }


def render(doc: dict[str, Any]) -> str:
    """:func:`describe`'s data as text, one section per kind."""
    out: list[str] = []
    out.append("revisions:")
    out += [f"  {n}  [{r['plugin']}]  {r['summary']}" for n, r in doc["revisions"].items()] or ["  (none)"]
    out.append("\nops:")
    for op_id, op in doc["ops"].items():
        rules = f" ({', '.join(op['rules'])})" if op["rules"] else ""
        out.append(f"  {op_id}  [{op['plugin']}]  {op['summary']}{rules}")
        out += [f"      {arg}: {dom}" for arg, dom in op["args"].items()]
    out.append("\nprimitives (replaceable with fuzzkit_replace_primitives):")
    for name, prim in doc["primitives"].items():
        kind = " (fault stage)" if prim["kind"] == "fault stage" else ""
        out.append(f"  {name}{prim['signature']}  [{prim['plugin']}]{kind}")
        for revision, summary in prim["summary"].items():
            out.append(f"      {summary}" if revision == "*" else f"      {revision}: {summary}")
        if "replaced_by" in prim:
            rep = prim["replaced_by"]
            how = "wrapped" if rep["wraps"] else "replaced"
            out.append(f"      {how} by {rep['plugin']}: {rep['reason']}")
    out.append("\nfault paths:")
    for arch, stages in doc["fault_paths"].items():
        out.append(f"  {arch}:")
        for i, st in enumerate(stages, 1):
            kinds = st["kinds"] if st["kinds"] == "all" else ", ".join(st["kinds"])
            where = st["provided_by"] or "not loaded, skipped"
            out.append(f"    {i}. {st['stage']}  (faults: {kinds})  [{where}]")
    out.append("\ninjection points:")
    out += [f"  {n}  [{ip['plugin']}]  {ip['summary']}" for n, ip in doc["injection_points"].items()]
    out.append("\ninvariants:")
    for key, inv in doc["invariants"].items():
        only = f", {inv['arch']} only" if inv["arch"] else ""
        out.append(f"  {key}  [{inv['plugin']}]  {inv['summary']}  (on {', '.join(inv['events'])}{only})")
    return "\n".join(out)
