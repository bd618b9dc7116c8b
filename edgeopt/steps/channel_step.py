"""Structured channel pruning (channels.py) as an optimize step: `optimize: [{channels: {target: 0.3}}]`.

channels.py owns the technique and its options (ChannelPruneSpec); this module only fits it to the step
interface: the file tag, the shared fine-tuning (training.py's FineTuner) in place of channel_training's
default, and the verdict on the record.

Gotchas: of the shared fine-tuning options only those ChannelPruneSpec declares apply (epochs, batch_size,
learning_rate, loss); `distill: true` (towards the model before this step) keeps channel_training's own
distillation loss, since the shared objective distils from a named teacher only.
"""

from __future__ import annotations

from .channels import ChannelPruneSpec, prune_channels

__all__ = ["ChannelPruneSpec", "run", "tag", "verify"]


def run(model, spec, train, *, seed, progress, log, fine_tune):
    """prune_channels with the shared fine-tuning; (the smaller model, prune_channels' record)."""
    from .channel_training import make_fine_tune

    own = make_fine_tune(spec, seed, progress)

    def tune(smaller, data, epochs, *, teacher=None):
        if teacher is not None:
            return own(smaller, data, epochs, teacher=teacher)
        fine_tune(smaller, data, epochs)  # trains in place; its record lands in the step's facts.training
        return smaller

    return prune_channels(model, spec, train, seed=seed, progress=progress, log=log, fine_tune=tune)


def tag(spec) -> str:
    """'channels30' (30% of every group's channels removed) or 'macs50' (at most 50% of the MACs kept)."""
    target = spec.target
    if isinstance(target, float):
        return f"channels{round(target * 100)}"
    return f"macs{round(target.macs * 100)}"


def verify(spec, record, measured) -> tuple[list, dict]:
    """The step fails unless it made the model smaller and, with a MAC budget, met it."""
    problems = []
    macs, params = record["macs"], record["params"]
    if params["after"] >= params["before"]:
        problems.append(f"no channel was removed ({params['before']:,} parameters before and after): every group "
                        "is pinned or too small; see the record's `pinned`, or select other layers")
    budget = getattr(spec.target, "macs", None)
    if budget is not None and macs["ratio"] is not None and macs["ratio"] > budget + 1e-9:
        problems.append(f"the model keeps {macs['ratio']:.1%} of its MACs, above the budget of {budget:.0%}")
    return problems, ({"max_macs_ratio": budget} if budget is not None else {})
