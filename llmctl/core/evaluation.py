"""`llmctl eval` as a function: score a saved model on a split, optionally gate on metrics.

    result = run_eval("runs/a", fail_under=["accuracy=0.9"])   # checks, evaluates, result["gates"]
    enforce_gates(result)                                       # GateFailed (exit 4) when a gate failed
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.errors import GateFailed, UsageError
from llmctl.metrics.thresholds import parse_thresholds


@dataclass
class Gates:
    """--fail-under (a metric must reach the value) and --fail-over (must not exceed it)."""

    under: dict[str, float] = field(default_factory=dict)
    over: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.under or self.over)

    def as_json(self, failed: list[str]) -> dict:
        return {"passed": not failed, "thresholds": self.under, "ceilings": self.over, "failed": failed}


def parse_gates(fail_under: list[str], fail_over: list[str] | None = None) -> Gates:
    """`accuracy=0.9` -> {"accuracy": 0.9}; several allowed. A lower-is-better metric (loss,
    perplexity) under --fail-under is refused: that gate would pass a worse model."""
    from llmctl.metrics import lower_is_better

    gates = Gates(parse_thresholds(fail_under, "--fail-under", "accuracy=0.9"),
                  parse_thresholds(fail_over or [], "--fail-over", "loss=0.5"))
    for name, value in gates.under.items():
        if lower_is_better(name):
            raise UsageError(f"--fail-under {name}={value:g}: {name} is better when lower, so this gate would pass "
                             "a worse model and fail a better one.", f"Use --fail-over {name}={value:g}.")
    return gates


def check_gate_names(gates: Gates, names: list[str] | None) -> None:
    """Gate names checked against what the evaluation will report (before the model loads)."""
    for flag, group in (("--fail-under", gates.under), ("--fail-over", gates.over)):
        for name in group:
            if names is not None and name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                raise UsageError(f"{flag} {name}: no such metric; this evaluation reports {', '.join(names)}.",
                                 f"Did you mean '{close[0]}'?" if close else "Use one of those names.")
    from llmctl.metrics import lower_is_better

    for name, value in gates.over.items():  # after the names: a misspelled one is told as such
        if not lower_is_better(name):
            raise UsageError(f"--fail-over {name}={value:g}: {name} is better when higher, so this gate would pass "
                             "a worse model and fail a better one.", f"Use --fail-under {name}={value:g}.")


def check_gates(metrics: dict, gates: Gates) -> list[str]:
    """Failed gates as readable lines; an unknown metric name is a usage error."""
    check_gate_names(gates, list(metrics))
    failed = [f"{name} {metrics[name]:.4f} < {limit:g}" for name, limit in gates.under.items()
              if not metrics[name] >= limit]
    failed += [f"{name} {metrics[name]:.4f} > {limit:g}" for name, limit in gates.over.items()
               if not metrics[name] <= limit]
    return failed


def run_eval(model: str, data: str | None = None, split: str | None = None, recipe: str | None = None,
             task: str | None = None, fail_under: list[str] | None = None, fail_over: list[str] | None = None,
             batch_size: int = 64, max_samples: int | None = None, precision: str | None = None,
             device: str | None = None, save_predictions: str | None = None) -> dict:
    """`llmctl eval` without Typer: everything the command line alone can get wrong fails first,
    before anything loads; then evaluate_model. With gates the result carries "gates" (passed,
    thresholds, ceilings, failed); `enforce_gates(result)` raises when one failed."""
    from llmctl.core.checks import at_least_one
    from llmctl.models.precision import check_precision
    from llmctl.runs.files import check_run
    from llmctl.tasks.recipe import load_recipe

    gates = parse_gates(fail_under or [], fail_over)
    at_least_one(batch_size=batch_size, max_samples=max_samples)
    check_precision(precision)
    check_run(model)  # a malformed file in the run: exit 2 naming it, before anything loads
    if save_predictions is not None:
        from llmctl.core.checks import writable_file

        writable_file(save_predictions, "--save-predictions")
    parsed = load_recipe(recipe) if recipe else None
    if task is not None:
        parsed = task_recipe(task, model, parsed)
    result = evaluate_model(model, data=data, split=split, recipe=parsed, batch_size=batch_size,
                            max_samples=max_samples, device=device, precision=precision, gates=gates,
                            save_predictions=save_predictions)
    role = None if data else split or "validation"  # the run's own split, when no --data names another
    result["rows"] = rows_covered(result["data"], result["samples"], max_samples, "--max-samples", role)
    if gates:
        result["gates"] = gates.as_json(check_gates(result["metrics"], gates))
    return result


def rows_covered(where: str, rows: int, limit: int | None, limit_name: str, split: str | None = None) -> dict:
    """Which rows a metric was computed on, for metrics.json, eval's JSON, the model card and the
    report: {"split", "data", "rows", "cut_by"}; cut_by names the setting that kept only the first
    `rows` rows (None: every row of the data)."""
    cut = limit is not None and rows >= limit
    return {"split": split, "data": where, "rows": rows, "cut_by": f"{limit_name} {limit}" if cut else None}


def task_recipe(task: str, model: str, recipe=None):
    """`--task NAME`: the recipe of that task with its default data keys (or --recipe's, when they agree)."""
    from llmctl.tasks.recipe import validate_recipe

    if recipe is not None:
        if recipe.task != task:
            raise UsageError(f"--task {task} and --recipe {recipe._source} (task {recipe.task}) disagree.",
                             "Drop --task; the recipe names the task.")
        return recipe
    return validate_recipe({"task": task, "model": {"name_or_path": model}, "data": {}}, source="--task")


def evaluate_model(model_path: str, data: str | None = None, split: str | None = None, recipe=None,
                   batch_size: int = 64, max_samples: int | None = None, device: str | None = None,
                   precision: str | None = None, gates: Gates | None = None,
                   save_predictions: str | None = None) -> dict:
    """Evaluate a run directory or saved model; returns {"metrics", "model", "data", "samples", "precision"}.
    A recipe with a zero_shot section scores a generative model's label likelihoods instead.
    Gate names, the device and the data are checked before any weight loads."""
    from llmctl.console import tell
    from llmctl.models.load import auto_class
    from llmctl.train.accelerator import make_accelerator
    from llmctl.models.quiet import quiet_libraries
    from llmctl.tasks.base import Task
    from llmctl.tasks.restore import task_for_model
    from llmctl.models.devices import device_type
    from llmctl.models.precision import inference_precision
    from llmctl.models.load import load_tokenizer, load_trained
    from llmctl.models.saved import find_model_dir

    gates = gates or Gates()
    dev = device_type(device)
    if recipe is not None and getattr(recipe, "zero_shot", None) is not None:
        from llmctl.generation.zeroshot import ZERO_SHOT_METRICS, evaluate_zero_shot
        from llmctl.tasks.base import Labels
        from llmctl.tasks.classification import ClassificationTask

        check_gate_names(gates, ClassificationTask(recipe.data, Labels()).metric_names() + ZERO_SHOT_METRICS)
        data_cfg, spec = eval_spec(recipe.data, data, split, max_samples)
        return _with_predictions_file(evaluate_zero_shot(
            model_path, recipe.model_copy(update={"data": data_cfg}), spec, batch_size=batch_size, device=dev,
            precision=precision or "auto", with_predictions=save_predictions is not None), save_predictions)
    if recipe is not None and recipe.task == "multiple-choice" and not _trained_by_llmctl(model_path):
        from llmctl.generation.choices import evaluate_choices, generative_family
        from llmctl.tasks.multiple_choice import MultipleChoiceTask

        kind = generative_family(model_path, recipe.model.trust_remote_code)
        if kind is not None:  # an encoder's multiple-choice head must be fine-tuned: the path below refuses it
            check_gate_names(gates, MultipleChoiceTask(recipe.data, kind=kind).metric_names())
            data_cfg, spec = eval_spec(recipe.data, data, split, max_samples)
            return _with_predictions_file(evaluate_choices(
                model_path, recipe.model_copy(update={"data": data_cfg}), spec, batch_size=batch_size, device=dev,
                precision=precision or "auto", with_predictions=save_predictions is not None), save_predictions)
    model_dir = find_model_dir(model_path)
    from llmctl.export.onnx_model import check_run_options, is_onnx_export

    onnx = is_onnx_export(model_dir)  # `llmctl export --format onnx`: onnxruntime on the CPU, fp32
    if onnx:
        check_run_options(device, precision)
        dev, precision = "cpu", "fp32"
    quiet_libraries()
    task, config = task_for_model(model_dir, recipe)
    data_cfg, spec = eval_spec(task.data_cfg, data, split, max_samples)
    task = task.with_data(data_cfg)
    if save_predictions is not None and type(task).references is Task.references:
        raise UsageError(f"--save-predictions is not available for {task.name} runs (their evaluation outputs "
                         "are scores, not predictions).", "Use `llmctl predict` on the inputs, or drop the option.")
    eval_split = tell(task.load_split("eval", spec))
    check_gate_names(gates, task.metric_names())

    from llmctl.config.schema import ModelConfig
    from llmctl.train.evaluate import evaluate

    resolved = inference_precision(precision, model_dir, dev)
    accelerator = make_accelerator(resolved, dev)
    trust = bool(recipe is not None and recipe.model.trust_remote_code)
    model_cfg = ModelConfig(name_or_path=str(model_dir), trust_remote_code=trust)
    tokenizer = load_tokenizer(model_cfg, **task.tokenizer_kwargs())
    features = tell(task.featurize(eval_split, tokenizer))  # before the model: data errors surface first
    if onnx:
        from llmctl.export.onnx_model import OnnxModel

        model = OnnxModel(model_dir)  # logits only: a loss only from tasks that compute it from them
    else:
        model = accelerator.prepare(load_trained(auto_class(task.auto_model), model_dir, trust))
        # DPO's reference log-probs, from the starting weights (the base with the adapters off under LoRA)
        features = tell(task.reference_columns(features, model, accelerator, trained=True))
    rows = None
    if save_predictions is None:
        metrics = evaluate(task, model, tokenizer, accelerator, features, eval_split, batch_size)
    else:
        from llmctl.train.evaluate import evaluate_with_predictions

        metrics, rows = evaluate_with_predictions(task, model, tokenizer, accelerator, features, eval_split, batch_size)
    result = {"metrics": metrics, "model": str(model_dir), "data": eval_split.where, "samples": len(eval_split),
              "output_dir": str(Path(model_path)), "precision": resolved}
    return _with_predictions_file(result | ({"predictions": rows} if rows is not None else {}), save_predictions)


def _with_predictions_file(result: dict, save_predictions: str | None) -> dict:
    """Write the result's "predictions" rows (one jsonl row per example) to `save_predictions`, and
    name the file in the result instead. Only the main process writes: under a launcher every rank
    gets here, and the others hold no rows (their empty file would replace the main one's)."""
    from llmctl.console import is_main_rank

    rows = result.pop("predictions", None)
    if save_predictions is None or rows is None:
        return result
    if not is_main_rank():
        return result
    from llmctl.files import write_text_atomic

    target = Path(save_predictions).expanduser()
    write_text_atomic(target, "".join(json.dumps(r) + "\n" for r in rows), "the predictions")
    return result | {"predictions_file": str(target)}


def _trained_by_llmctl(model_path: str) -> bool:
    from llmctl.models.saved import TASK_FILE
    from llmctl.models.saved import find_model_dir

    return (find_model_dir(model_path) / TASK_FILE).is_file()


ROLES = ("train", "validation", "test")


def eval_spec(data_cfg, data: str | None, split: str | None, max_samples: int | None) -> tuple:
    """(data config, split or file to evaluate): a copy of data_cfg with --data / --split /
    --max-samples applied; the one given is not changed. The whole split is scored unless
    --max-samples is given (the recipe's data.max_eval_samples is for validation during training).
    Without --data, --split names one of the run's own splits (train / validation / test)."""
    changes = {"max_eval_samples": max_samples}
    if data and split:
        # --data names a hub dataset, --split its split.
        changes["dataset"], spec = data, split
    elif data:
        # A file given with --data replaces the recorded hub dataset.
        changes["dataset"], spec = None, data
    elif split:
        spec = own_split(data_cfg, split)
    else:
        spec = data_cfg.validation
    if spec is None:
        raise UsageError("Nothing to evaluate on.", "Pass --data FILE_OR_HUB_ID (and --split NAME for hub data).")
    return data_cfg.model_copy(update=changes), spec


def own_split(data_cfg, split: str) -> str:
    """What `--split NAME` evaluates without --data: the run's data.NAME (a file or a hub split), or,
    for a run on a hub dataset, that dataset's split NAME."""
    given = {role: getattr(data_cfg, role, None) for role in ROLES}
    given = {role: spec for role, spec in given.items() if spec}
    if split in given:
        return given[split]
    if getattr(data_cfg, "dataset", None):
        return split  # another split of the run's hub dataset
    listed = ", ".join(f"{role} ({Path(str(spec)).name})" for role, spec in given.items()) or "none"
    raise UsageError(f"--split {split}: the run has no {split} split; its splits are {listed}.",
                     f"Use --split {' / '.join(given) or 'NAME'}, or --data FILE to score another file.")


def enforce_gates(result: dict) -> None:
    """After the result is shown: exit 4 (GateFailed) when run_eval's gates found a metric out of bounds."""
    failed = result.get("gates", {}).get("failed")
    if failed:
        raise GateFailed("Quality gate failed: " + "; ".join(failed) + ".")
