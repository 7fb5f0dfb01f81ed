"""What every checkpoint load is checked against, before and after (llmctl.models.load calls these):

- custom code: a local folder whose config.json or tokenizer_config.json has an `auto_map` would
  run that folder's Python, so it is refused unless the user set trust_remote_code (transformers
  would otherwise ask on stdin, or quietly use its own class for a known model_type);
- missing weights: whatever transformers would start at random is refused by name (finetune
  may start a new task head, nothing else);
- a LoRA run's base model: the weight files must still be the ones recorded at training.

Read from JSON alone, so nothing from the folder runs before the refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.errors import ModelError

CODE_FILES = ("config.json", "tokenizer_config.json")


def refuse_custom_code(folder, trust_remote_code: bool) -> None:
    """A local folder that names its own Python classes (auto_map) loads only with trust_remote_code."""
    path = Path(str(folder)).expanduser()
    if trust_remote_code or not path.is_dir():
        return  # a hub id: transformers is told trust_remote_code=False and refuses by itself
    for name in CODE_FILES:
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent or unreadable: the load itself reports it
        if isinstance(data, dict) and data.get("auto_map"):
            raise ModelError(
                f"Model {path} needs custom code: the auto_map in its {name} would run the Python files "
                "in that folder, which llmctl does not do by default.",
                "Set model.trust_remote_code: true in the recipe if you trust that code.")


def missing_weights(info: dict | None, allowed=lambda key: False) -> list[str]:
    """Weights transformers reported as missing or of the wrong shape (started at random)."""
    info = info or {}
    missing = list(info.get("missing_keys") or []) + [str(m[0]) if isinstance(m, (tuple, list)) else str(m)
                                                        for m in info.get("mismatched_keys") or []]
    return sorted(k for k in set(missing) if not allowed(k))


def refuse_missing(missing: list[str], where, hint: str) -> None:
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelError(f"{where} has no trained weights for {shown}: they would start at random, so every "
                         "score and prediction would be noise.", hint)


def new_head_only(model):
    """For finetune: the keys a fresh task head may lack (the head and a pooler, both outside the
    pretrained body); a layer of the body itself must be in the checkpoint."""
    prefix = getattr(model, "base_model_prefix", "") or ""

    def allowed(key: str) -> bool:
        if prefix and not key.startswith(prefix + "."):
            return True  # the head sits beside the body (classifier, score, qa_outputs, ...)
        return key.startswith(f"{prefix}.pooler.") if prefix else False

    return allowed


def check_base_unchanged(base: str, recorded: dict | None, where, digests: dict | None = None) -> dict | None:
    """The base model at `base` still holds the weight files an adapter was trained on
    (`recorded`: base_sha256 from llmctl.json). Returns the current digests."""

    if not recorded:
        return digests
    digests = digests if digests is not None else base_digests(base)
    if digests != recorded:
        raise ModelError(
            f"The base model {base} of {where} is not the one it was trained on (its weight files differ from "
            "base_sha256 in llmctl.json); the adapter on it would give a wrong model.",
            f"Put the original base model back at {base} (or point base_model_name_or_path in "
            "adapter_config.json at a copy of it).")
    return digests


def recorded_base(run_or_model_dir) -> dict | None:
    """base_sha256 a LoRA run recorded: in model/llmctl.json, or environment.json's peft section."""
    path = Path(run_or_model_dir)
    for file, keys in ((path / "llmctl.json", ("peft",)), (path / "model" / "llmctl.json", ("peft",)),
                       (path / "environment.json", ("peft",))):
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        section = data.get(keys[0]) if isinstance(data, dict) else None
        if isinstance(section, dict) and section.get("base_sha256"):
            return section["base_sha256"]
    return None


def base_digests(source: str) -> dict | None:
    """sha256 of a local base model's weight files (what `export --base` compares); None for a hub id."""
    from llmctl.files import file_sha256

    path = Path(source).expanduser()
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path] if path.suffix == ".gguf" and path.is_file() else []
    return {f.name: file_sha256(f) for f in files} or None
