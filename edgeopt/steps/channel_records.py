"""The manifest record of a channel-pruning run: per layer, the channels kept and removed, and the
multiply-accumulates and parameters before and after; per step, the surgery proof."""

from __future__ import annotations


def describe_run(run, smaller, seconds) -> dict:
    from .channel_graph import build
    from .channel_surgery import count_params

    spec, dense = run.spec, run.graph
    after = build(smaller)
    macs_before, macs_after = dense.macs(), after.macs()
    params_before, params_after = count_params(run.original), count_params(smaller)
    channels_before = sum(len(n.output) for n in dense.producers())
    channels_after = sum(len(kept) for kept in run.origin.values())
    return {
        "structure": "channels",
        "spec": spec.model_dump(mode="json"),
        "fraction": round(run.fraction, 6),
        "macs": _totals(sum(macs_before.values()), sum(macs_after.values())),
        "params": _totals(int(run.original.count_params()), int(smaller.count_params())),
        "channels": _totals(channels_before, channels_after),
        "layers": _layers(run, dense, macs_before, macs_after, params_before, params_after),
        "pinned": _pinned(dense),
        "steps": run.steps,
        "notes": run.notes,
        "seconds": round(seconds, 2),
    }


def _totals(before, after) -> dict:
    return {"before": int(before), "after": int(after), "ratio": round(after / before, 6) if before else None}


def _layers(run, dense, macs_before, macs_after, params_before, params_after) -> dict:
    """Every layer whose channels, MACs or parameters changed, and every producer."""
    layers = {}
    for path, node in dense.nodes.items():
        entry = {"class": type(node.layer).__name__}
        if path in run.origin:
            n = len(node.output)
            kept = run.origin[path]
            entry.update(channels_before=n, channels_after=len(kept),
                         removed=sorted(set(range(n)) - set(kept)))
        if path in macs_before:
            entry.update(macs_before=int(macs_before[path]), macs_after=int(macs_after.get(path, 0)))
        if params_before.get(path):
            entry.update(params_before=params_before[path], params_after=params_after.get(path, 0))
        changed = path in run.origin or entry.get("params_before") != entry.get("params_after")
        if changed:
            layers["/".join(path)] = entry
    return layers


def _pinned(dense) -> list:
    """Groups with channels that must stay, and why (the first reason found for each)."""
    out = []
    for group in dense.groups():
        if group.pinned:
            out.append({"layers": group.key, "channels": len(group.pinned),
                        "why": sorted(set(group.pinned.values()))[:3]})
    return out
