"""llmctl vs the Hugging Face Trainer (run_ner.py style), side by side, on CoNLL-2003 NER.

    .venv/bin/python bench/conll.py                          # all 14,041 sentences, Trainer fastest + llmctl
    .venv/bin/python bench/conll.py --repeats 3              # median of 3 interleaved runs
    .venv/bin/python bench/conll.py --train-sentences 640    # quick smoke check
    .venv/bin/python bench/conll.py --only trainer-default,trainer-fast,llmctl
    .venv/bin/python bench/conll.py --smoke                  # smallest end-to-end run, results in a temp folder

Everything runs in one invocation on one machine, so the ratios compare like with like
even when absolute numbers move with the hardware or the load. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness

DATA_DIR = harness.SHARED_DATA / "conll2003"
RECIPE = harness.REPO / "llmctl" / "recipes" / "ner" / "conll2003-minilm-local.yaml"

# The work both tools do (the recipe above says the same for llmctl).
SEED, EPOCHS, BATCH, EVAL_BATCH, LR, MAX_LEN = 42, 1, 32, 64, 5e-5, 128
TAG_FIELD = 1  # lines are `token TAG 0`
ALL_SENTENCES = 14041

CONFIGS = {
    "trainer-default": "Trainer defaults (random order, dynamic padding, fp32)",
    "trainer-fast": "Trainer fastest (group_by_length, bf16, dynamic padding)",
    "llmctl": "llmctl finetune (recipe defaults)",
}
TARGETS = {"trainer-fast": (1.3, "Trainer fastest")}  # llmctl speed-up asked for; the output's wording
F1_TOLERANCE = 0.01
REFERENCE_F1 = 0.839  # HF Trainer, run_ner.py recipe, these settings (the reference)


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


class TrainerSide:
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
        from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer

        fast = name == "trainer-fast"
        harness.seed_before_model(SEED)
        model = AutoModelForTokenClassification.from_pretrained(
            self.model_path, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)})
        args = harness.trainer_arguments(self.tmp / f"trainer-{run_id}", epochs=EPOCHS, batch=BATCH,
                                         eval_batch=EVAL_BATCH, lr=LR, seed=SEED, fast=fast)
        trainer = Trainer(model=model, args=args, processing_class=self.tokenizer, train_dataset=self.train,
                          data_collator=DataCollatorForTokenClassification(self.tokenizer))
        speed = harness.train_timed(trainer)
        output = trainer.predict(self.valid)  # separately, so it never counts as training time
        preds = np.argmax(output.predictions, axis=-1)
        predictions, references = [], []
        for pred_row, label_row in zip(preds, output.label_ids):
            keep = label_row != -100  # run_ner.py: score the positions that carry a label
            predictions.append([self.labels[p] for p in pred_row[keep]])
            references.append([self.labels[t] for t in label_row[keep]])
        return {**speed, **seqeval_scores(references, predictions), "precision": "bf16" if fast else "fp32"}


class Conll(harness.Benchmark):
    name = "conll"
    title = "CoNLL-2003 NER: llmctl vs Hugging Face Trainer"
    configs = CONFIGS
    quality = ("f1", "f1_lenient")  # lenient: the Trainer rows only (what run_ner.py prints)
    smoke = {"train_sentences": 640}
    required = (DATA_DIR / "train.txt", DATA_DIR / "valid.txt")
    data_name = "CoNLL-2003"

    def add_flags(self, parser):
        parser.add_argument("--train-sentences", type=int, default=ALL_SENTENCES,
                            help="First N training sentences (default: all).")

    def check_flags(self, args):
        return "--train-sentences must be positive" if args.train_sentences < 1 else None

    def default_configs(self, args):
        return ["trainer-fast", "llmctl"]  # trainer-default is slow: only when named in --only

    def prepare(self, args):
        self.train_file = write_train_subset(args.train_sentences, self.tmp)
        if harness.wants_trainer(args.configs):
            self.trainer = TrainerSide(self.model_path, self.train_file, self.tmp)
        return {"train_sentences": len(read_conll(self.train_file)[0]),
                "valid_sentences": len(read_conll(DATA_DIR / "valid.txt")[0])}

    def amount(self, settings):
        return f" on {settings['train_sentences']} sentences"

    def run_llmctl(self, run_id):
        out = harness.run_llmctl(RECIPE, self.model_path, [
            f"data.train={self.train_file}",
            f"data.validation={DATA_DIR.resolve() / 'valid.txt'}",
        ], self.tmp / f"llmctl-{run_id}")
        metrics = out["metrics"]
        return {
            **harness.llmctl_speed(out),
            "samples": out["train"]["samples"],
            "f1": float(metrics["f1"]),
            "precision_recall": [metrics["precision"], metrics["recall"]],
            "per_type_f1": {k[:-3]: round(v, 4) for k, v in metrics.items() if k.endswith("_f1")},
            "precision": out["train"].get("precision"),
        }

    def describe(self, result):
        return f"F1 {result['f1']:.4f}"

    def render(self, summary, settings, extra):
        llm = summary.get("llmctl")
        lines = ["| config | train samples/s | entity F1 (strict IOB2) | F1 (lenient, run_ner.py) | llmctl speed ratio |",
                 "|---|---:|---:|---:|---:|"]
        for name, s in summary.items():
            lenient = f"{s['f1_lenient']:.4f}" if s.get("f1_lenient") is not None else "-"
            lines.append(f"| {s['label']} | {s['samples_per_second']:.1f} | {s['f1']:.4f} | {lenient} | "
                         f"{harness.ratio_cell(summary, name)} |")
        lines.append("")
        target_lines, checks = harness.speed_targets(summary, TARGETS)
        lines += target_lines
        if llm:
            for name in ("trainer-fast", "trainer-default"):
                if name in summary:
                    delta = llm["f1"] - summary[name]["f1_lenient"]
                    checks[f"f1_delta_vs_{name}"] = harness.delta_check(delta, F1_TOLERANCE, one_sided=True)
                    lines.append(f"llmctl strict F1 minus {name} F1 as run_ner.py reports it (lenient): "
                                 f"{delta:+.4f} (target >= -{F1_TOLERANCE})")
            if settings["train_sentences"] >= ALL_SENTENCES:
                delta = llm["f1"] - REFERENCE_F1
                checks["f1_delta_vs_reference"] = harness.delta_check(delta, F1_TOLERANCE, one_sided=True)
                lines.append(f"llmctl F1 minus the reference {REFERENCE_F1}: {delta:+.4f} (target >= -{F1_TOLERANCE})")
        lines += [
            "",
            f"work: {settings['train_sentences']} CoNLL-2003 train sentences, {EPOCHS} epoch, batch {BATCH}, "
            f"lr {LR:g}, max length {MAX_LEN}, seed {SEED}; entity F1 (seqeval) on the {settings['valid_sentences']} "
            f"valid.txt sentences; median of {settings['repeats']} run(s) per config",
        ]
        return lines, checks


if __name__ == "__main__":
    sys.exit(harness.main(Conll(), __doc__))
