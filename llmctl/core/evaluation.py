"""`llmctl eval` as a function: score a saved model on a split, optionally gate on metrics."""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import GateFailed, UsageError


def parse_gates(items: list[str]) -> dict[str, float]:
    """`accuracy=0.9` -> {"accuracy": 0.9}; several allowed."""
    gates = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            gates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--fail-under '{item}' is not METRIC=VALUE.", "Example: --fail-under accuracy=0.9")
    return gates


def check_gates(metrics: dict, gates: dict[str, float]) -> list[str]:
    """Failed gates as readable lines; an unknown metric name is a usage error."""
    failed = []
    for name, threshold in gates.items():
        if name not in metrics:
            raise UsageError(
                f"--fail-under {name}: no such metric; this evaluation reports {', '.join(metrics)}.",
                "Use one of those names.",
            )
        if not metrics[name] >= threshold:
            failed.append(f"{name} {metrics[name]:.4f} < {threshold}")
    return failed


def evaluate_model(model_path: str, data: str | None = None, split: str | None = None, recipe=None,
                   batch_size: int = 64, max_samples: int | None = None, device: str | None = None) -> dict:
    """Evaluate a run directory or saved model; returns {"metrics", "model", "data", "samples"}.
    A recipe with a zero_shot section scores a generative model's label likelihoods instead."""
    from llmctl.core.setup import auto_class, device_type, make_accelerator, quiet_libraries, task_for_model
    from llmctl.models import load_tokenizer
    from llmctl.runs import find_model_dir

    if recipe is not None and getattr(recipe, "zero_shot", None) is not None:
        from llmctl.generation.zeroshot import evaluate_zero_shot

        spec = eval_spec(recipe.data, data, split, max_samples)
        return evaluate_zero_shot(model_path, recipe, spec, batch_size=batch_size, device=device)
    model_dir = find_model_dir(model_path)
    quiet_libraries()
    task, config = task_for_model(model_dir, recipe)
    spec = eval_spec(task.data_cfg, data, split, max_samples)
    eval_split = task.load_split("eval", spec)

    from llmctl.config.schema import ModelConfig
    from llmctl.train.loop import evaluate
    from llmctl.train.precision import resolve_precision

    dev = device_type(device)
    accelerator = make_accelerator(resolve_precision("auto", dev), dev)
    model_cfg = ModelConfig(name_or_path=str(model_dir))
    tokenizer = load_tokenizer(model_cfg, **task.tokenizer_kwargs())
    features = task.featurize(eval_split, tokenizer)  # before the model: data errors surface first
    model = auto_class(task.auto_model).from_pretrained(model_dir, use_safetensors=True)
    model = accelerator.prepare(model)
    metrics = evaluate(task, model, tokenizer, accelerator, features, eval_split, batch_size)
    return {"metrics": metrics, "model": str(model_dir), "data": eval_split.where, "samples": len(eval_split),
            "output_dir": str(Path(model_path))}


def eval_spec(data_cfg, data: str | None, split: str | None, max_samples: int | None) -> str:
    """The split or file to evaluate, applying --data / --split / --max-samples to data_cfg in place."""
    if max_samples is not None:
        data_cfg.max_eval_samples = max_samples
    spec = data or split or data_cfg.validation
    if data and split:
        # --data names a hub dataset, --split its split.
        data_cfg.dataset, spec = data, split
    if spec is None:
        raise UsageError("Nothing to evaluate on.", "Pass --data FILE_OR_HUB_ID (and --split NAME for hub data).")
    # A file given with --data replaces the recorded hub dataset.
    if data and not split:
        data_cfg.dataset = None
    return spec


def gate(result: dict, gates: dict[str, float]) -> None:
    failed = check_gates(result["metrics"], gates)
    if failed:
        raise GateFailed("Quality gate failed: " + "; ".join(failed) + ".")
