"""`model.init_from: TEACHER` with `model.layers: [0, 1, 2]`: a smaller model made of some of a
trained model's transformer layers (the usual start of a distilled student, as DistilBERT
started from every other BERT layer).

The new config is the source's with num_hidden_layers = len(layers) (and its per-layer lists,
such as layer_types, cut the same way); every weight is the source's: embeddings, final norm,
pooler and head as they are, and layer layers[j] of the source as layer j. Works for any
family whose layers sit in one ModuleList as long as the config's layer count (BERT's
encoder.layer, GPT-2's h, Llama's layers, ...).
"""

from __future__ import annotations

import copy

from llmctl.errors import RecipeError


def layer_count(config) -> int:
    return int(config.num_hidden_layers)


def check_layers(layers: list[int], config, source: str) -> None:
    """Before any weight loads: every chosen layer exists in the source."""
    count = layer_count(config)
    wrong = [i for i in layers if i >= count]
    if wrong:
        raise RecipeError(f"model.layers {layers}: model.init_from {source} has {count} layers (0 to {count - 1}), "
                          f"so {', '.join(map(str, wrong))} {'does' if len(wrong) == 1 else 'do'} not exist.",
                          f"Choose layers from 0 to {count - 1}.")


def layer_list_name(model) -> str:
    """The dotted name of the ModuleList holding the model's transformer layers."""
    import torch

    count = layer_count(model.config)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count and name:
            return name
    raise RecipeError(f"model.init_from: no list of {count} layers found in {type(model).__name__}, "
                      "so model.layers cannot pick from it.", "Start the student from a smaller checkpoint instead.")


def smaller_config(config, layers: list[int]):
    new = copy.deepcopy(config)
    new.num_hidden_layers = len(layers)
    for name in ("layer_types",):  # per-layer settings (sliding / full attention) follow their layers
        values = getattr(config, name, None)
        if isinstance(values, list) and len(values) == layer_count(config):
            setattr(new, name, [values[i] for i in layers])
    return new


def cut_layers(source, auto_class, layers: list[int]):
    """A new model of auto_class with `source`'s weights and only `layers` of its layers (in that order)."""
    prefix = layer_list_name(source) + "."
    weights = {}
    for key, value in source.state_dict().items():
        if not key.startswith(prefix):
            weights[key] = value
            continue
        index, rest = key[len(prefix):].split(".", 1)
        if int(index) in layers:
            weights[f"{prefix}{layers.index(int(index))}.{rest}"] = value
    student = auto_class.from_config(smaller_config(source.config, layers))
    student.load_state_dict(weights, strict=True)
    return student
