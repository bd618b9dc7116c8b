"""What a Keras model is made of: nested models, recurrent and preprocessing layers, input ranges.

Works on tf_keras and Keras 3 models alike (it only reads class names, configs and weights).
"""

from __future__ import annotations

RECURRENT = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
PREPROCESSING = {"Rescaling", "Resizing", "Normalization", "CenterCrop", "Discretization", "CategoryEncoding",
                 "IntegerLookup", "Hashing"}
STRING_LAYERS = {"TextVectorization", "StringLookup"}
_CONTAINERS = {"Sequential", "Functional", "Model"}
# Layers that do not change what range of values the model expects, looked through to find one that does.
_PASS_THROUGH = PREPROCESSING - {"Rescaling", "Normalization"} | {"InputLayer", "Reshape", "Permute"}


def all_layers(model):
    """Every layer, nested models' layers included (the nested model itself first), depth first."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers") and type(layer).__name__ in _CONTAINERS:
            yield from all_layers(layer)


def is_augmentation(layer) -> bool:
    # RandomFlip, RandomRotation, RandomZoom...: identity at inference, which is all an export runs.
    return type(layer).__name__.startswith("Random")


def recurrent_layers(model) -> list[str]:
    return [f"{layer.name} ({type(layer).__name__})" for layer in all_layers(model)
            if type(layer).__name__ in RECURRENT]


def layers_of_note(model) -> dict:
    """Layers that change how a model converts, by kind; only kinds present are listed."""
    kinds = {"nested_models": [], "recurrent": [], "preprocessing": [], "augmentation": [], "lambda": [],
             "embedding": [], "string_input": []}
    for layer in all_layers(model):
        cls = type(layer).__name__
        label = f"{layer.name} ({cls})"
        if cls in _CONTAINERS:
            kinds["nested_models"].append(label)
        elif cls in RECURRENT:
            kinds["recurrent"].append(label)
        elif cls in PREPROCESSING:
            kinds["preprocessing"].append(label)
        elif is_augmentation(layer):
            kinds["augmentation"].append(label)
        elif cls == "Lambda":
            kinds["lambda"].append(label)
        elif cls == "Embedding":
            kinds["embedding"].append(label)
        elif cls in STRING_LAYERS:
            kinds["string_input"].append(label)
    return {k: v for k, v in kinds.items() if v}


def input_ranges(model) -> list[dict]:
    """A plausible value range per input, read from the first layer that implies one.

    Embedding: integer token ids in [0, input_dim). Rescaling by about 1/255: 8-bit pixels in [0, 255].
    Otherwise [0, 1). Multi-input models get [0, 1) for every input (which layer reads which input is
    not worth guessing).
    """
    default = {"low": 0.0, "high": 1.0, "integer": False, "why": "no layer implies a range"}
    if len(model.inputs) != 1:
        return [default] * len(model.inputs)
    for layer in all_layers(model):
        cls = type(layer).__name__
        if cls in _CONTAINERS or cls in _PASS_THROUGH or is_augmentation(layer):
            continue
        if cls == "Embedding":
            return [{"low": 0, "high": int(layer.input_dim), "integer": True,
                     "why": f"token ids for {layer.name} (Embedding, input_dim {layer.input_dim})"}]
        if cls == "Rescaling" and _scale(layer) and _scale(layer) < 0.02:
            return [{"low": 0.0, "high": 255.0, "integer": False,
                     "why": f"8-bit pixels: {layer.name} rescales by {_scale(layer):.4g}"}]
        break
    return [default]


def _scale(layer):
    scale = layer.get_config().get("scale")
    return float(scale) if isinstance(scale, (int, float)) else None
