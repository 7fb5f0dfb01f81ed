"""Pre-training from scratch, side by side with nanoGPT's CPU recipe (issue 28).

    .venv/bin/python bench/scratch.py                      # full: 2,000 iterations each, roughly 20-30 min on 2 quiet cores
    .venv/bin/python bench/scratch.py --smoke              # 20 iterations each, results in a temp folder (~5 min quiet; 25 min on a loaded 2-core box)
    .venv/bin/python bench/scratch.py --only nanogpt,char --max-iters 500

Each configuration runs as a whole process, timed from start to exit:

- `nanogpt`: nanoGPT (../shared/anchors/nanogpt, run from a temporary copy of that folder, as its
  README says: never imported, never copied into llmctl) with the CPU recipe of its README (4 layers,
  4 heads, 128 wide, block 64, batch 12, lr 1e-3 cosine to 1e-4 after 100 warm-up steps, AdamW
  beta2 0.99, weight decay 0.1, no dropout) on ../shared/data/shakespeare, then scored by its
  `full_val_loss.py` over the whole validation text in consecutive blocks (nats per character: one
  token is one character).
- `char`: `llmctl finetune pretrain/shakespeare-char` (the same model and budget, a char tokenizer),
  scored over the whole validation text in consecutive blocks (data.eval_blocks: nats per character).
- `bpe`: `pretrain/shakespeare-bpe` (byte-level BPE, 1,024 pieces), the same model and steps.
- `t5`: `pretrain/shakespeare-t5` (T5's denoising): its loss, first logged and last, and the
  span-corruption statistics of its batches (noise density and mean span length) against T5's.

Reported: nats and bits per character, whole-process wall time, training tokens per second, and
llmctl's ratios to nanoGPT (targets: nats/char at most nanoGPT's + 0.02, wall time at most 1.0x; BPE
bits/char below nanoGPT's). Results: bench/results/scratch.{md,json}, or --results-dir.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NANOGPT = SHARED / "anchors" / "nanogpt"
DATA = SHARED / "data" / "shakespeare"
BLOCK, BATCH = 64, 12
CONFIGS = ("nanogpt", "char", "bpe", "t5")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=(os.environ | (env or {})), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, wall


def run_nanogpt(work: Path, iters: int) -> dict:
    folder = work / "nanogpt"
    shutil.copytree(NANOGPT, folder)  # its README: run it from a copy (it writes data/ and out-*/ beside itself)
    python = sys.executable
    timed([python, "data/prepare_local.py", str(DATA / "train.txt"), str(DATA / "validation.txt"), "data/shk"], folder)
    args = ["config/train_shakespeare_char.py", "--dataset=shk", "--device=cpu", "--compile=False",
            "--eval_iters=20", "--log_interval=1", f"--block_size={BLOCK}", f"--batch_size={BATCH}", "--n_layer=4",
            "--n_head=4", "--n_embd=128", f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--dropout=0.0",
            "--always_save_checkpoint=True", f"--eval_interval={min(250, iters)}"]
    proc, wall = timed([python, "train.py", *args], folder)
    times = [float(t) for t in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", proc.stdout, flags=re.M)]
    scored, _ = timed([python, "full_val_loss.py", "out-shakespeare-char", "data/shk"], folder)
    nats = float(scored.stdout.strip().splitlines()[-1])
    train_s = sum(times[1:]) / 1000 if len(times) > 1 else wall  # the first iteration includes warm-up
    return {"nats_per_character": nats, "bits_per_character": nats / math.log(2), "wall_s": wall,
            "tokens_per_second": BATCH * BLOCK * max(len(times) - 1, 1) / train_s}


def run_llmctl(work: Path, recipe: str, iters: int) -> dict:
    out = work / recipe.replace("/", "-")
    overrides = [f"train.max_steps={iters}", f"train.eval_every={iters}", f"train.save_every={iters}",
                 f"data.train={DATA / 'train.txt'}", f"data.validation={DATA / 'validation.txt'}",
                 f"train.logging_steps={max(1, min(50, iters // 4))}"]
    cmd = [sys.executable, "-m", "llmctl", "finetune", recipe, "--output-dir", str(out), "--json"]
    for item in overrides:
        cmd += ["--set", item]
    proc, wall = timed(cmd, REPO, {"LLMCTL_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1",
                                   "PYTHONPATH": str(REPO)})
    result = json.loads(proc.stdout)
    metrics, train = result["metrics"], result["train"]
    log_rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log_rows if "loss" in r]
    found = {"wall_s": wall, "loss": metrics.get("loss"), "first_train_loss": losses[0] if losses else None,
             "last_train_loss": losses[-1] if losses else None,
             "tokens_per_second": train["samples_per_second"] * BLOCK, "run": str(out)}
    for key in ("nats_per_character", "bits_per_character", "bits_per_byte"):
        if key in metrics:
            found[key] = metrics[key]
    return found


def span_statistics(run_dir: Path, blocks: int = 2000) -> dict:
    """Noise density and mean span length of the denoising task's own training batches."""
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    from llmctl.tasks.denoising import DenoisingData, DenoisingTask

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    task = DenoisingTask(DenoisingData(train=str(DATA / "train.txt"), max_length=BLOCK, text_split="paragraph"))
    ids = tokenizer(DATA.joinpath("validation.txt").read_text(), add_special_tokens=False)["input_ids"]
    rows = [{"tokens": ids[i * BLOCK:(i + 1) * BLOCK], "index": i} for i in range(min(blocks, len(ids) // BLOCK))]
    batch = task.collate_for_training(rows, tokenizer, seed=42, epoch=0)
    sentinel = {tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(100)}
    hidden = spans = 0
    for labels in batch["labels"].tolist():
        kept = [t for t in labels if t != -100][:-1]  # without the closing </s>
        spans += sum(t in sentinel for t in kept)
        hidden += sum(t not in sentinel for t in kept)
    return {"noise_density": hidden / (len(rows) * BLOCK), "mean_span_length": hidden / max(spans, 1),
            "blocks": len(rows)}


def table(results: dict) -> str:
    ref = results.get("nanogpt", {})
    lines = ["| config | nats/char | bits/char | wall s | tokens/s | nats/char - nanoGPT | wall x nanoGPT | tokens/s x nanoGPT |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "t5":
            continue
        nats = r.get("nats_per_character")
        cells = [name, f"{nats:.4f}" if nats else "-", f"{r['bits_per_character']:.4f}" if "bits_per_character" in r else "-",
                 f"{r['wall_s']:.1f}", f"{r['tokens_per_second']:,.0f}"]
        if ref and name != "nanogpt" and nats:
            cells += [f"{nats - ref['nats_per_character']:+.4f}", f"{r['wall_s'] / ref['wall_s']:.2f}",
                      f"{r['tokens_per_second'] / ref['tokens_per_second']:.2f}"]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if "t5" in results:
        t5 = results["t5"]
        lines += ["", f"T5 denoising: validation loss {t5['loss']:.4f}, training loss {t5['first_train_loss']:.3f} -> "
                      f"{t5['last_train_loss']:.3f}, wall {t5['wall_s']:.1f}s; span corruption on {t5['spans']['blocks']} "
                      f"blocks: noise density {t5['spans']['noise_density']:.4f} (T5: 0.15), mean span "
                      f"{t5['spans']['mean_span_length']:.3f} (T5: 3)."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("--smoke", action="store_true", help="20 iterations each, results in a temp folder")
    parser.add_argument("--results-dir", type=Path)
    args = parser.parse_args()
    missing = [p for p in (NANOGPT / "train.py", DATA / "train.txt", DATA / "validation.txt") if not p.exists()]
    if missing:
        log(f"skipped: {missing[0]} is missing (nanoGPT in ../shared/anchors, the corpus in ../shared/data)")
        return 0
    iters = 20 if args.smoke else args.max_iters
    only = [c for c in args.only.split(",") if c]
    unknown = set(only) - set(CONFIGS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    results_dir = args.results_dir or (Path(tempfile.mkdtemp(prefix="bench-scratch-")) if args.smoke
                                       else REPO / "bench" / "results")
    results = {}
    with tempfile.TemporaryDirectory(prefix="scratch-") as tmp:
        work = Path(tmp)
        for name in only:
            log(f"{name}: {iters} iterations ...")
            if name == "nanogpt":
                results[name] = run_nanogpt(work, iters)
            else:
                results[name] = run_llmctl(work, f"pretrain/shakespeare-{name}", iters)
                if name == "t5":
                    results[name]["spans"] = span_statistics(Path(results[name]["run"]))
            log(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'run'}, default=str)}")
    text = f"# Pre-training from scratch vs nanoGPT ({iters} iterations, batch {BATCH}, block {BLOCK})\n\n{table(results)}\n"
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
               "platform": platform.platform()}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "scratch.md").write_text(text)
    (results_dir / "scratch.json").write_text(json.dumps({"iters": iters, "machine": machine, "results": results},
                                                         indent=2, default=str))
    print(text)
    log(f"results: {results_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
