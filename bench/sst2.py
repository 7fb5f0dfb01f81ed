"""llmctl vs the Hugging Face Trainer, side by side, on the same SST-2 fine-tuning work.

    .venv/bin/python bench/sst2.py                       # defaults: 4,000 rows, each config once
    .venv/bin/python bench/sst2.py --repeats 3           # median of 3 interleaved runs
    .venv/bin/python bench/sst2.py --only llmctl,trainer-fast --train-rows 320   # quick check
    .venv/bin/python bench/sst2.py --smoke               # smallest end-to-end run, results in a temp folder

Everything runs in one invocation on one machine, so the ratios compare like with like
even when absolute numbers move with the hardware or the load. See bench/README.md.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import harness

DATA_DIR = harness.SHARED_DATA / "sst2"
RECIPE = harness.REPO / "llmctl" / "recipes" / "classification" / "sst2-minilm-local.yaml"

# The work both tools do (the recipe above says the same for llmctl).
SEED, EPOCHS, BATCH, EVAL_BATCH, LR, MAX_LEN = 42, 1, 32, 64, 5e-5, 128

CONFIGS = {  # name -> label in the table
    "trainer-default": "Trainer defaults (random order, dynamic padding, fp32)",
    "trainer-fast": "Trainer fastest (group_by_length, bf16, dynamic padding)",
    "trainer-padded": "Trainer padded to 128 (run_glue.py default, fp32)",
    "llmctl": "llmctl finetune (recipe defaults)",
}
# The llmctl speed-up the design notes ask for, and how the output names that Trainer.
TARGETS = {"trainer-fast": (1.3, "Trainer fastest"), "trainer-default": (4.0, "Trainer defaults")}
ACCURACY_TOLERANCE = 0.01


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


class TrainerSide:
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
        from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                                  default_data_collator)

        padded = name == "trainer-padded"
        fast = name == "trainer-fast"
        harness.seed_before_model(SEED)
        model = AutoModelForSequenceClassification.from_pretrained(self.model_path, num_labels=2)
        args = harness.trainer_arguments(self.tmp / f"trainer-{run_id}", epochs=EPOCHS, batch=BATCH,
                                         eval_batch=EVAL_BATCH, lr=LR, seed=SEED, fast=fast)

        def accuracy(pred):
            return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

        trainer = Trainer(
            model=model, args=args, processing_class=self.tokenizer,
            train_dataset=self.features("train", padded), eval_dataset=self.features("validation", padded),
            data_collator=default_data_collator if padded else DataCollatorWithPadding(self.tokenizer),
            compute_metrics=accuracy,
        )
        speed = harness.train_timed(trainer)
        eval_metrics = trainer.evaluate()  # separately, so it never counts as training time
        return {**speed, "accuracy": float(eval_metrics["eval_accuracy"]), "precision": "bf16" if fast else "fp32"}


class Sst2(harness.Benchmark):
    name = "sst2"
    title = "SST-2: llmctl vs Hugging Face Trainer"
    configs = CONFIGS
    quality = ("accuracy",)
    smoke = {"train_rows": 320}
    required = (DATA_DIR / "train.tsv", DATA_DIR / "validation.tsv")
    data_name = "SST-2"

    def add_flags(self, parser):
        parser.add_argument("--train-rows", type=int, default=4000, help="Shuffled training rows (default 4000).")
        parser.add_argument("--with-padded", action="store_true", help="Also run the Trainer padded to 128 (slow).")

    def check_flags(self, args):
        return "--train-rows must be positive" if args.train_rows < 1 else None

    def default_configs(self, args):
        return [n for n in CONFIGS if n != "trainer-padded" or args.with_padded]

    def prepare(self, args):
        self.train_tsv = write_train_subset(args.train_rows, self.tmp)
        if harness.wants_trainer(args.configs):
            self.trainer = TrainerSide(self.model_path, self.train_tsv, self.tmp)
        return {"train_rows": len(read_tsv(self.train_tsv)), "validation_rows": len(read_tsv(DATA_DIR / "validation.tsv"))}

    def amount(self, settings):
        return f" on {settings['train_rows']} rows"

    def run_llmctl(self, run_id):
        out = harness.run_llmctl(RECIPE, self.model_path, [
            f"data.train={self.train_tsv}",
            "data.max_train_samples=null",  # the subset is already the 4,000 shuffled rows
            f"data.validation={DATA_DIR.resolve() / 'validation.tsv'}",
        ], self.tmp / f"llmctl-{run_id}")
        return {
            **harness.llmctl_speed(out),
            "accuracy": float(out["metrics"]["accuracy"]),
            "precision": out["train"].get("precision"),
            "num_processes": out["train"].get("num_processes"),
        }

    def describe(self, result):
        return f"accuracy {result['accuracy']:.4f}"

    def render(self, summary, settings, extra):
        llm = summary.get("llmctl")
        lines = ["| config | train samples/s | accuracy | llmctl speed ratio |", "|---|---:|---:|---:|"]
        for name, s in summary.items():
            lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['accuracy']:.4f} | "
                         f"{harness.ratio_cell(summary, name)} |")
        lines.append("")
        target_lines, checks = harness.speed_targets(summary, TARGETS)
        lines += target_lines
        if llm and "trainer-fast" in summary:
            delta = llm["accuracy"] - summary["trainer-fast"]["accuracy"]
            checks["accuracy_delta_vs_trainer-fast"] = harness.delta_check(delta, ACCURACY_TOLERANCE)
            lines.append(f"accuracy delta vs Trainer fastest: {delta:+.3f} (target within {ACCURACY_TOLERANCE})")
        lines += [
            "",
            f"work: {settings['train_rows']} SST-2 train rows, {EPOCHS} epoch, batch {BATCH}, lr {LR:g}, "
            f"max length {MAX_LEN}, seed {SEED}; accuracy on {settings['validation_rows']} validation rows; "
            f"median of {settings['repeats']} run(s) per config",
        ]
        return lines, checks


if __name__ == "__main__":
    sys.exit(harness.main(Sst2(), __doc__))
