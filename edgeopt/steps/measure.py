"""What a step really did to the weights, measured on the model (never assumed from the options): sparsity
per layer (with M:N and block compliance) and distinct values per layer (weight clustering).
"""

from __future__ import annotations

import numpy as np

_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def kernels(model) -> dict:
    """Layer name -> kernel array, looking through tfmot's wrappers and into nested models."""
    found = {}
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):  # a nested model
            found.update(kernels(layer))
            continue
        inner = getattr(layer, "layer", layer)
        # The variables, not the attributes: inside a QAT wrapper `kernel` is the fake-quantized tensor of a
        # trace, and the wrapper (not the layer) tracks the variable, still named after the layer.
        for weight in layer.weights:
            parts = weight.name.split(":")[0].split("/")
            if parts[-1] in _KERNELS and (len(parts) < 2 or parts[-2] == inner.name):
                found[inner.name] = np.asarray(weight.numpy())
                break
    return found


def sparsity(model, layer_names=None, m_by_n=None, block_size=None) -> dict:
    """Share of exactly-zero kernel weights per layer and over `layer_names` (default: every kernel)."""
    found = kernels(model)
    names = [n for n in found if layer_names is None or n in layer_names]
    layers, zeros, total = {}, 0, 0
    for name in names:
        kernel = found[name]
        z = int(np.count_nonzero(kernel == 0))
        layers[name] = {"weights": int(kernel.size), "sparsity": round(z / kernel.size, 6)}
        if m_by_n:
            layers[name]["m_by_n_compliance"] = m_by_n_compliance(kernel, m_by_n)
        if block_size and tuple(block_size) != (1, 1) and kernel.ndim == 2:
            layers[name]["block_compliance"] = block_compliance(kernel, block_size)
            layers[name]["block_sparsity"] = block_sparsity(kernel, block_size)
        zeros += z
        total += kernel.size
    every = [w for w in model.get_weights() if np.issubdtype(np.asarray(w).dtype, np.floating)]
    all_zeros = sum(int(np.count_nonzero(w == 0)) for w in every)
    all_total = sum(int(np.asarray(w).size) for w in every)
    return {
        "model": round(zeros / total, 6) if total else 0.0,
        "all_weights": round(all_zeros / all_total, 6) if all_total else 0.0,
        "layers": layers,
    }


def m_by_n_compliance(kernel, m_by_n):
    """Share of N-groups along the input-channel axis (second to last) with at most M non-zeros."""
    m, n = map(int, m_by_n.split(":"))
    grouped = np.moveaxis(kernel, -2, -1)
    if grouped.shape[-1] % n:
        return None  # tfmot leaves layers whose input channels are not a multiple of N dense
    groups = grouped.reshape(-1, n)
    return round(float(np.mean(np.count_nonzero(groups, axis=1) <= m)), 6)


def _blocks(kernel, block_size):
    """(blocks that are zero as a whole, as a (rows, columns) grid; the grid expanded to the kernel's shape)."""
    bh, bw = block_size
    h, w = kernel.shape
    padded = np.pad(kernel, ((0, -h % bh), (0, -w % bw)))  # edge blocks, as tfmot pools them ('SAME')
    blocks = padded.reshape(padded.shape[0] // bh, bh, padded.shape[1] // bw, bw)
    empty = np.all(blocks == 0, axis=(1, 3))
    return empty, np.repeat(np.repeat(empty, bh, axis=0), bw, axis=1)[:h, :w]


def block_sparsity(kernel, block_size):
    """Share of blocks that are zero as a whole: what tfmot's target counts when it prunes blocks (edge blocks
    padded, so fewer single weights may be zero than the target when a dimension is not a multiple of a block)."""
    empty, _ = _blocks(kernel, block_size)
    return round(float(empty.mean()), 6)


def block_compliance(kernel, block_size):
    """Share of zero weights that lie in blocks that are zero as a whole (1.0: the block pattern holds)."""
    _, in_empty_block = _blocks(kernel, block_size)
    zeros = kernel == 0
    return round(float(np.count_nonzero(zeros & in_empty_block) / np.count_nonzero(zeros)), 6) if zeros.any() else 1.0


def distinct_values(model, layer_names=None, per_channel=False) -> dict:
    """Distinct kernel values per layer (a clustered layer has at most its number of clusters, plus 0); with
    `per_channel`, the most in any output channel of a Conv2D kernel (tfmot clusters those channel by channel)."""
    found = kernels(model)
    counts = {}
    for name, k in found.items():
        if layer_names is not None and name not in layer_names:
            continue
        if per_channel and k.ndim == 4:
            counts[name] = max(int(np.unique(k[..., c]).size) for c in range(k.shape[-1]))
        else:
            counts[name] = int(np.unique(k).size)
    return counts
