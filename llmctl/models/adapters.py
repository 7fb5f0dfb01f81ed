"""LoRA adapters through peft: which layers get one, wrapping a model for training, and loading
an adapter run back (base model from adapter_config.json, then the adapter).

A run trained with a `peft:` section saves model/adapter_config.json and
model/adapter_model.safetensors (LoRA matrices plus the task head, trained in full through
modules_to_save: without it a reloaded classifier has a random head, peft#577 /
transformers#26160), next to the base config (labels, pad id), the tokenizer and llmctl.json.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from llmctl.errors import ModelError, UsageError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Task heads that are trained in full and saved with the adapter (the attribute names the
# transformers heads use: BERT/GPT-2 `classifier`, Llama/Qwen2 `score`, T5 `classification_head`).
HEAD_NAMES = ("classifier", "score", "qa_outputs", "classification_head")

# Attention and MLP projections per family; peft's own defaults cover attention only
# (query/value), which learns markedly less on classification.
FAMILY_TARGETS = {
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "t5": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
    "mt5": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
}
LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
for _family in ("llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "phi3", "olmo", "smollm3"):
    FAMILY_TARGETS[_family] = LLAMA_LIKE

TASK_TYPES = {
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForTokenClassification": "TOKEN_CLS",
    # peft's QUESTION_ANS wrapper drops token_type_ids (and position_ids) on the way to the model, so a
    # BERT QA adapter would train without segment ids that its merged model then uses: the plain wrapper
    # passes every input through.
    "AutoModelForQuestionAnswering": None,
    "AutoModelForCausalLM": "CAUSAL_LM",
    "AutoModelForSeq2SeqLM": "SEQ_2_SEQ_LM",
    "AutoModelForMultipleChoice": None,  # peft has no such task type; the plain PeftModel wraps it
    "AutoModelForMaskedLM": None,
}


def is_adapter_dir(model_dir: Path) -> bool:
    return (Path(model_dir) / ADAPTER_CONFIG).is_file()


def check_before_load(peft_cfg, device: str) -> None:
    """What can be refused before any weight loads: 4-bit base weights need bitsandbytes on CUDA."""
    if not peft_cfg.quantized:
        return
    key = "peft.method: qlora" if peft_cfg.method == "qlora" else "peft.load_in_4bit: true"
    if device != "cuda":
        raise UsageError(f"{key} loads the base model in 4 bits through bitsandbytes, which needs a CUDA GPU; "
                         f"this run is on {device}.", "Use peft.method: lora (full-precision base) here.")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError(f"{key} needs the bitsandbytes package, which is not installed.",
                         "pip install bitsandbytes, or use peft.method: lora.")


def quantization_config(peft_cfg):
    """BitsAndBytesConfig for QLoRA (NF4, double quantisation, bf16 compute, as in the QLoRA paper)."""
    if not peft_cfg.quantized:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def linear_names(model) -> list[str]:
    """Full names of every Linear / GPT-2 Conv1D layer, the layers LoRA can adapt."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # peft's rule for a list of names


def head_modules(model) -> list[str]:
    """The task head's attribute names on a transformers model (empty for a language-model head)."""
    import torch

    return [name for name in HEAD_NAMES if isinstance(getattr(model, name, None), torch.nn.Module)]


def resolve_targets(model, peft_cfg, source: str, also_saved: list[str] = ()) -> list[str] | str:
    """The target_modules for peft: the recipe's, or the family default; every name must match a
    Linear layer outside the head (a one-line UsageError lists the model's layer names)."""
    heads = peft_cfg.modules_to_save if peft_cfg.modules_to_save is not None else head_modules(model)
    heads = list(heads) + list(also_saved)
    outside_head = [n for n in linear_names(model)
                    if not any(n == h or n.startswith(h + ".") for h in heads)]
    wanted = peft_cfg.target_modules
    if wanted == "all-linear":
        return "all-linear"
    key = "peft.target_modules"
    if wanted is None:
        wanted = FAMILY_TARGETS.get(getattr(model.config, "model_type", None))
        if wanted is None:
            return "all-linear"  # an unknown family: every Linear but the output layer and the head
        wanted = [t for t in wanted if any(_matches(n, t) for n in outside_head)]
        key = f"the default target_modules of {model.config.model_type}"
    missing = [t for t in wanted if not any(_matches(n, t) for n in outside_head)]
    if missing or not wanted:
        short = sorted({n.rsplit(".", 1)[-1] for n in outside_head})
        raise UsageError(f"{key}: {', '.join(map(repr, missing)) or 'nothing'} matches no Linear layer of "
                         f"{source}; its Linear layers are {', '.join(short)}.",
                         "Name some of those in peft.target_modules, or use all-linear.")
    return wanted


def check_modules_to_save(model, names: list[str], targets, source: str) -> None:
    """modules_to_save trains whole modules in full: each must exist, and none may hold a LoRA
    target (that is full fine-tuning of the backbone, and LoRA inside it would never be used)."""
    modules = dict(model.named_modules())
    for name in names:
        found = [n for n in modules if _matches(n, name)]
        if not found:
            raise UsageError(f"peft.modules_to_save: {name!r} is no module of {source}; its task head is "
                             f"{', '.join(head_modules(model)) or 'absent (a language-model head is never saved)'}.",
                             "Name the head, or leave modules_to_save null for the task's head.")
        if isinstance(targets, list):
            inside = [n for n in linear_names(model) for f in found
                      if n.startswith(f + ".") and any(_matches(n, t) for t in targets)]
            if inside:
                raise UsageError(f"peft.modules_to_save: {name!r} holds LoRA target layers ({inside[0]}, ...), so "
                                 "it would be fully fine-tuned with the adapter unused.",
                                 "Save only the task head there, or drop the peft section for full fine-tuning.")


def untrained_modules(model, source: str) -> list[str]:
    """Modules whose weights the base checkpoint lacks (a pooler missing from a masked-LM
    checkpoint, a fresh head): transformers starts them at random, so frozen they could never
    be rebuilt from the base when the adapter is loaded; they train in full and are saved with it.
    Read from a local checkpoint's safetensors headers; a hub id is taken as complete."""
    from safetensors import safe_open

    files = sorted(Path(source).expanduser().glob("*.safetensors")) if Path(source).expanduser().is_dir() else []
    if not files:
        return []
    saved = set()
    for file in files:
        with safe_open(str(file), "pt") as handle:
            saved.update(handle.keys())
    prefix = getattr(model, "base_model_prefix", "") + "."
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    modules = []
    for name, _ in model.named_parameters():
        if name in tied or name in saved or prefix + name in saved or (
                name.startswith(prefix) and name[len(prefix):] in saved):
            continue
        owner = name.rsplit(".", 1)[0]
        if owner not in modules:
            modules.append(owner)
    return modules


def wrap(model, peft_cfg, auto_model: str, source: str):
    """The peft model around `model` (LoRA layers injected in place, everything else frozen)
    and a summary {"method", "trainable_parameters", "total_parameters", "target_modules", ...}."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    heads = peft_cfg.modules_to_save if peft_cfg.modules_to_save is not None else head_modules(model)
    fresh = [m for m in untrained_modules(model, source)
             if not any(m == h or m.startswith(h + ".") for h in heads)]
    targets = resolve_targets(model, peft_cfg, source, also_saved=fresh)
    check_modules_to_save(model, heads, targets, source)
    # all-linear leaves out only the output embedding and a sequence classifier's head: keep every
    # module trained in full free of LoRA layers, whatever the task.
    excluded = fresh + (list(heads) if targets == "all-linear" else [])
    heads = heads + fresh
    if peft_cfg.quantized:
        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(task_type=TASK_TYPES[auto_model], r=peft_cfg.r, lora_alpha=peft_cfg.lora_alpha,
                        lora_dropout=peft_cfg.dropout, target_modules=targets, exclude_modules=excluded or None,
                        modules_to_save=list(heads) or None)  # a copy: peft extends the list in place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    # The saved adapter names its base; a local base is recorded by absolute path so the run loads
    # from any working directory. Set after get_peft_model, which takes the name from the model (the
    # folder, for a GGUF file) and warns when it replaces one set before.
    peft_model.peft_config["default"].base_model_name_or_path = _absolute(source)
    trainable, total = peft_model.get_nb_trainable_parameters()
    summary = {"method": peft_cfg.method, "r": peft_cfg.r, "alpha": peft_cfg.lora_alpha,
               "dropout": peft_cfg.dropout, "target_modules": adapted_layer_names(peft_model),
               "modules_to_save": heads, "trainable_parameters": trainable, "total_parameters": total}
    return peft_model, summary


def plan_adapter(auto_class, config, peft_cfg, auto_model: str, source: str, trust_remote_code: bool = False) -> dict:
    """The summary `wrap` gives, from the config alone: the model is built on the meta device (no
    weights, no memory), so the checks `wrap` makes (target_modules and modules_to_save matching
    layers) refuse a recipe before anything loads, and the trainable-parameter count is known."""
    import torch

    with torch.device("meta"):
        model = auto_class.from_config(config, trust_remote_code=trust_remote_code)
    plain = peft_cfg.model_copy(update={"method": "lora", "load_in_4bit": False})  # no 4-bit weights to prepare
    _, summary = wrap(model, plain, auto_model, source)
    return summary | {"method": peft_cfg.method}


def adapted_layer_names(peft_model) -> list[str]:
    """Last name parts of the layers that really got a LoRA adapter (after every exclusion)."""
    from peft.tuners.lora import LoraLayer

    return sorted({n.rsplit(".", 1)[-1] for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)})


def _absolute(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def save_adapter(model, directory: Path, state_dict: dict | None = None) -> None:
    """adapter_config.json + adapter_model.safetensors, and the base config (labels, pad id) that
    eval / predict read to rebuild the task. `state_dict`: the whole model's, gathered from the
    shards under FSDP (peft picks the adapter's tensors out of it)."""
    # llmctl never resizes the vocabulary, so the base's embedding table never travels with the
    # adapter; peft's "auto" would look for the base's config.json to check, and warn for a GGUF base.
    model.save_pretrained(directory, save_embedding_layers=False,
                          **({"state_dict": state_dict} if state_dict is not None else {}))
    model.get_base_model().config.save_pretrained(directory)


def base_of(model_dir: Path) -> str:
    """The base model an adapter run needs; a local one that is gone is a one-line ModelError."""
    config_file = Path(model_dir) / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{config_file} is unreadable or names no base_model_name_or_path.",
                         "Train the run again; adapter_config.json is written by llmctl finetune.") from exc
    path = Path(base).expanduser()
    if path.is_absolute() and not ((path / "config.json").is_file() or (path.suffix == ".gguf" and path.is_file())):
        raise ModelError(f"Adapter run {model_dir} needs its base model {base}, which is not there.",
                         f"Put the base model back at that path, or set base_model_name_or_path in {config_file} "
                         "to where it is now.")
    return base


def check_same_base(model_dir: Path, base: str) -> None:
    """`--base` must be the model the adapter was trained on: the same weight files when the run
    recorded them, else the same architecture and sizes."""
    from transformers import AutoConfig

    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"--base {base} is not a saved model (no config.json there).",
                         "Point --base at the base model's directory.")
    meta_file = Path(model_dir) / "llmctl.json"
    recorded = json.loads(meta_file.read_text()).get("peft", {}).get("base_sha256") if meta_file.is_file() else None
    if recorded:
        from llmctl.models.trust import base_digests

        if base_digests(base) != recorded:
            raise UsageError(f"--base {base} is not the base this adapter was trained on (its weight files differ "
                             f"from the ones recorded in {meta_file}); merging would give a wrong model.",
                             "Pass the original base model (a copy of it is fine).")
        return
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")
    from llmctl.models.gate import pretrained

    mine, theirs = pretrained(AutoConfig, model_dir).to_dict(), pretrained(AutoConfig, base).to_dict()
    differ = [k for k in keys if mine.get(k) != theirs.get(k)]
    if differ:
        raise UsageError(f"--base {base} is not the base this adapter was trained on ({differ[0]}: "
                         f"{theirs.get(differ[0])} there, {mine.get(differ[0])} in the run).",
                         "Pass the original base model.")


def load_adapter_model(auto_class, model_dir: Path, base: str | None = None, **kwargs):
    """Base model (with the run's config: labels, pad id) plus the adapter, in eval mode. The
    task head must come from the adapter: a head missing from both would start at random. The
    base must be the one trained on (base_sha256), unless `base` was given and checked already."""
    from peft import PeftModel
    from transformers import AutoConfig

    from llmctl.models import gguf
    from llmctl.models.gate import load_weights, pretrained
    from llmctl.models.trust import check_base_unchanged, recorded_base

    if base is None:
        base = base_of(model_dir)
        check_base_unchanged(base, recorded_base(model_dir), f"adapter run {model_dir}")
    config = pretrained(AutoConfig, model_dir)
    folder, gguf_file = gguf.locate(base)
    saved = json.loads((Path(model_dir) / ADAPTER_CONFIG).read_text()).get("modules_to_save") or []
    model = load_weights(auto_class, folder, gguf_file, config=config, use_safetensors=True,
                         allowed_missing=lambda _: lambda k: any(k.startswith(m + ".") for m in saved),
                         missing_hint="Train the run again with that module in peft.modules_to_save.", **kwargs)
    try:
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in 5.x
            warnings.simplefilter("ignore", FutureWarning)
            return PeftModel.from_pretrained(model, model_dir).eval()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"Cannot load the adapter in {model_dir} onto {base}: {first}") from exc


def load_merged(auto_class, model_dir, **kwargs):
    """The adapter merged into its base (a plain transformers model), or None when `model_dir`
    is not an adapter run."""
    if not is_adapter_dir(Path(model_dir)):
        return None
    return load_adapter_model(auto_class, Path(model_dir), **kwargs).merge_and_unload()


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def trainable_state(model) -> dict:
    """The tensors a checkpoint must hold for an adapter run: what trains (frozen base weights
    are reloaded from the base model on --resume)."""
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def by_model_names(model, saved: dict) -> dict:
    """A saved adapter's tensors under the model's own parameter names, for loading into a
    sharded model (peft's loader copies into plain tensors). peft saves without the adapter name:
    `...query.lora_A.weight` is the model's `...query.lora_A.default.weight`, and a head trained
    in full, `...classifier.weight`, is `...classifier.modules_to_save.default.weight`."""
    out = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = name.replace(".modules_to_save.default.", ".").replace(".default.", ".")
            if key not in saved:
                raise ValueError(f"the saved adapter has no tensor for {name} (looked for {key})")
            out[name] = saved[key]
    return out


def load_trainable_state(model, tensors: dict) -> None:
    """Put trainable_state's tensors back; every trainable tensor must be there, nothing else."""
    wanted = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != wanted:
        odd = sorted(set(tensors) ^ wanted)
        raise ValueError(f"adapter checkpoint tensors differ from the model's trainable ones ({odd[0]}, ...)")
    model.load_state_dict(tensors, strict=False)
