"""model/README.md: a Hugging Face model card for every saved model.

The front matter is what the Hub indexes (model-index with the run's metrics, base model,
library, license when known); the prose is for people: the recipe, the command that reproduces
the run, how much data it saw, and what it was and was not evaluated on. Everything is read
from the run directory, so the card can be written when the model is saved (metrics of the
best evaluation so far) and rewritten when the run finishes (final and test metrics, data sizes).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

CARD = "README.md"
# The Hub's pipeline tags (huggingface.js PIPELINE_DATA keys) for every task of llmctl.tasks.TASKS,
# keyed by the recipe's `task:` name; tests/runs check each is a Hub tag.
PIPELINE_TAGS = {
    "classification": "text-classification",
    "ner": "token-classification",
    "qa": "question-answering",
    "multiple-choice": "multiple-choice",
    "causal-lm": "text-generation",
    "seq2seq": "text2text-generation",
    "masked-lm": "fill-mask",
    "embedding": "sentence-similarity",  # as sentence-transformers models are tagged
    "denoising": "text2text-generation",
    "preference": "text-generation",
}
# Rendered by llmctl.console (route_logs): writing a run never prints.
_log = logging.getLogger(__name__)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def write_model_card(run_dir: Path, model_dir: Path | None = None, saved_at: dict | None = None,
                     splits: dict | None = None) -> Path | None:
    """Write (or rewrite) `model_dir`/README.md (default: the run's model/) from the run directory.
    `saved_at`: the evaluation the model was saved at, used until metrics.json exists;
    `splits`: role -> split (anything with len()), for the data sizes."""
    run_dir = Path(run_dir)
    model_dir = Path(model_dir) if model_dir is not None else run_dir / "model"
    try:
        card = build_model_card(run_dir, model_dir, saved_at, splits)
    except (ValueError, TypeError) as exc:  # metadata huggingface_hub rejects must not stop a training run
        _log.warning(f"no model card written to {model_dir / CARD}: {exc}")
        return None
    from llmctl.files import replace_file

    path = model_dir / CARD
    replace_file(path, str(card))
    return path


def write_export_card(model_dir: Path, dest: Path, merged: bool, fmt: str, quantization: dict | None = None) -> None:
    """The card of an exported folder `dest`: the run's card for the weights written there (a
    merged LoRA adapter is a plain transformers model; an ONNX graph is library onnx). A model
    folder that is not inside a run keeps the card it has, if any."""
    run_dir = Path(model_dir).parent
    if not (run_dir / "recipe.yaml").is_file():
        if (Path(model_dir) / CARD).is_file():
            (Path(dest) / CARD).write_bytes((Path(model_dir) / CARD).read_bytes())
        return
    try:
        card = build_model_card(run_dir, dest, export={"merged": merged, "format": fmt, "quantization": quantization})
    except (ValueError, TypeError) as exc:
        _log.warning(f"no model card written to the export: {exc}")
        return
    (Path(dest) / CARD).write_text(str(card), encoding="utf-8")


def rewrite_model_card(run_dir: Path, splits: dict) -> None:
    """After the run: the card again, with the final metrics and data sizes (when a model was saved)."""
    if (Path(run_dir) / "model").is_dir():
        write_model_card(run_dir, splits=splits)


def build_model_card(run_dir: Path, model_dir: Path, saved_at: dict | None = None, splits: dict | None = None,
                     export: dict | None = None):
    """`export`: {"merged": bool, "format": "safetensors" | "onnx"} for a card of `llmctl export` output."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    recipe = _read_yaml(run_dir / "recipe.yaml")
    env = _read_json(run_dir / "environment.json")
    final = _read_json(run_dir / "metrics.json")
    task = recipe.get("task", "unknown")
    data = recipe.get("data") or {}
    adapter = _read_json(model_dir / "adapter_config.json")
    base = adapter.get("base_model_name_or_path") or (recipe.get("model") or {}).get("name_or_path")
    hub_base = base if base and _is_hub_id(base) else None
    pipeline = PIPELINE_TAGS.get(task, task)

    validation = final.get("metrics") or {k: v for k, v in (saved_at or {}).items() if k not in ("step", "epoch")}
    results = _eval_results(EvalResult, pipeline, data, "validation", validation)
    results += _eval_results(EvalResult, pipeline, data, "test", final.get("test_metrics") or {})
    card_data = ModelCardData(
        model_name=run_dir.resolve().name,
        base_model=hub_base,
        library_name="peft" if adapter else "onnx" if export and export["format"] == "onnx" else "transformers",
        license=_base_license(base),
        pipeline_tag=pipeline,
        tags=["llmctl", task] + (["lora"] if adapter or (export and export["merged"]) else [])
        + (["onnx"] if export and export["format"] == "onnx" else [])
        + (["int8"] if export and export.get("quantization") else []),
        datasets=[data["dataset"]] if data.get("dataset") else None,
        eval_results=results or None,
        metrics=sorted({r.metric_type for r in results}) or None,
    )
    prose = _prose(run_dir.resolve().name, task, base, adapter, recipe, env, final, saved_at, splits, data)
    if export:
        said = ("The LoRA adapter merged into its base: a plain checkpoint, loaded without peft"
                if export["merged"] else "The run's model")
        said += (", exported to ONNX (`model.onnx`; `llmctl predict` runs it through onnxruntime)."
                 if export["format"] == "onnx" else ", written by `llmctl export`.")
        if export.get("quantization"):
            said += "\n\n" + _quantization_prose(export["quantization"])
        title, rest = prose.split("\n", 1)
        prose = f"{title}\n\n{said}\n{rest}"
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{prose}")


def _quantization_prose(q: dict) -> str:
    """What --quantize did and what it cost, measured on the validation split."""
    rows = "\n".join(f"| {name} | {q['fp32'][name]:.4f} | {q['quantized'][name]:.4f} | {change:+.4f} |"
                     for name, change in q["change"].items() if change is not None)
    return (f"Quantised to {q['scheme']} with {q['method']}; the graph went from {q['fp32_bytes']:,} to "
            f"{q['quantized_bytes']:,} bytes. Both graphs scored on {q['data']} ({q['samples']} rows):\n\n"
            f"| metric | fp32 | {q['scheme']} | change |\n|---|---|---|---|\n{rows}")


def _eval_results(EvalResult, pipeline: str, data: dict, role: str, metrics: dict) -> list:
    source = data.get(role)
    if not source or not metrics:
        return []
    dataset = data.get("dataset")
    if dataset:  # a Hub dataset: its id, config and split name
        kind, name, split, config = dataset, f"{dataset} ({data.get('config')})" if data.get("config") else dataset, \
            source, data.get("config")
    else:  # a local file: its name is all that is known
        kind, name, split, config = Path(source).name, f"local file {Path(source).name}", role, None
    return [EvalResult(task_type=pipeline, dataset_type=kind, dataset_name=name, dataset_split=split,
                       dataset_config=config, metric_type=metric, metric_value=round(float(value), 6),
                       metric_name=f"{role} {metric}")
            for metric, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _prose(name, task, base, adapter, recipe, env, final, saved_at, splits, data) -> str:
    import yaml

    lines = [f"# {name}", "",
             f"A {task} model fine-tuned with llmctl from `{base}`"
             + (" as a LoRA adapter (load it with peft on top of that base model)." if adapter else "."), ""]
    lines += ["## How it was trained", "", "Reproduce it with:", "", "```", reproduce_command(env, recipe), "```", "",
              "The resolved recipe:", "", "```yaml", yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", ""]
    lines += ["## Data", ""] + _data_lines(data, splits, final) + [""]
    lines += ["## Evaluation", ""] + _evaluation_lines(data, final, saved_at) + [""]
    packages = (env.get("packages") or {})
    if packages:
        lines += ["## Environment", "", ", ".join(f"{k} {v}" for k, v in packages.items() if v)
                  + (f"; device {env['device']}" if env.get("device") else ""), ""]
    return "\n".join(lines)


def reproduce_command(env: dict, recipe: dict) -> str:
    """The command line the run was started with, as the user would type it; else the recipe's."""
    argv = env.get("argv") or []
    if len(argv) > 1 and argv[1] == "finetune":
        return shlex.join(["llmctl", *argv[1:]])
    return f"llmctl finetune {shlex.quote(str(Path(recipe.get('output_dir', 'RUN')) / 'recipe.yaml'))} --output-dir NEW_DIR"


def _data_lines(data: dict, splits: dict | None, final: dict) -> list[str]:
    sizes = {role: len(split) for role, split in (splits or {}).items() if split is not None}
    covered = {(r or {}).get("split"): r for r in (final.get("metric_rows") or {}).values()}
    lines = []
    for role in ("train", "validation", "test"):
        source = data.get(role)
        if not source:
            continue
        where = f"`{data['dataset']}` split `{source}`" if data.get("dataset") else f"`{Path(source).name}`"
        size = f": {sizes[role]:,} rows" if role in sizes else ""
        if (covered.get(role) or {}).get("cut_by"):
            size += f" (the first {sizes.get(role, covered[role]['rows']):,}: {covered[role]['cut_by']})"
        lines.append(f"- {role}: {where}{size}")
    samples = (final.get("train") or {}).get("samples")
    if samples:
        lines.append(f"- training examples seen (all epochs): {samples:,}")
    if not sizes:
        lines.append("- row counts are written when the run finishes")
    return lines


def _evaluation_lines(data: dict, final: dict, saved_at: dict | None) -> list[str]:
    lines = []
    metrics = final.get("metrics") or {k: v for k, v in (saved_at or {}).items() if k not in ("step", "epoch")}
    covered = final.get("metric_rows") or {}
    if data.get("validation") and metrics:
        step = final.get("best_step") or (saved_at or {}).get("step")
        on = f" on {rows_text(covered['metrics'])}" if covered.get("metrics") else ""
        lines.append(f"Validation (`{Path(str(data['validation'])).name}`), best evaluation"
                     + (f" at step {step}" if step else "") + on + ": " + _metric_text(metrics) + ".")
        lines.append("This split also chose the checkpoint, so its scores are optimistic.")
    if final.get("test_metrics"):
        on = f" on {rows_text(covered['test_metrics'])}" if covered.get("test_metrics") else ""
        lines.append(f"Test (`{Path(str(data['test'])).name}`), scored once after training{on}: "
                     + _metric_text(final["test_metrics"]) + ".")
    lines += ["", "Not evaluated on:"]
    if not data.get("validation"):
        lines.append("- any validation data (none was given; the last model was saved)")
    if not data.get("test"):
        lines.append("- a held-out test split (none was given)")
    if (covered.get("metrics") or {}).get("cut_by") or (data.get("max_eval_samples") and not covered):
        lines.append(f"- validation rows past the first {data['max_eval_samples']:,} (data.max_eval_samples)")
    lines.append("- data from other sources, domains or languages than the files above, and fairness or "
                 "safety benchmarks")
    return lines


def rows_text(rows: dict | None) -> str:
    """'all 200 rows of test.csv' / 'the first 50 rows of dev.csv (data.max_eval_samples 50)'."""
    if not rows:
        return ""
    name = Path(str(rows["data"])).name
    if rows.get("cut_by"):
        return f"the first {rows['rows']:,} rows of {name} ({rows['cut_by']})"
    return f"all {rows['rows']:,} rows of {name}"


def _metric_text(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, (int, float)))


def _is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists() and not name.endswith(".gguf")


def _base_license(base: str | None) -> str | None:
    """The license a local base model's own card declares (a Hub base is not asked: no network)."""
    if not base:
        return None
    local = Path(base).expanduser()
    if not local.exists():
        return None
    readme = (local if local.is_dir() else local.parent) / CARD
    if not readme.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(readme, ignore_metadata_errors=True).data.get("license")
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict:
    """The card is best effort (it is rewritten during training): a file the run reader refuses
    reads as empty here; the commands that read a run refuse it up front (run_files.check_run)."""
    from llmctl.runs.files import BadRunFile, read_json

    try:
        return read_json(path, root=path.parent) or {}
    except BadRunFile:
        return {}


def _read_yaml(path: Path) -> dict:
    from llmctl.runs.files import BadRunFile, read_yaml

    try:
        return read_yaml(path, root=path.parent) or {}
    except BadRunFile:
        return {}
