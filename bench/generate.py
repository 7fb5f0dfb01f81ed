"""llmctl generation vs the Hugging Face references, side by side, on the same prompts and settings.

    .venv/bin/python bench/generate.py                    # GPT-2-small and T5-small sized, fp32 and bf16
    .venv/bin/python bench/generate.py --dtypes fp32 --repeats 1 --families gpt2   # quicker

dtypes: fp32 and bf16 run both tools in that dtype; `auto` runs each with its default (llmctl
`--precision auto`, which times fp32 and bf16 and the weights' layout on this machine for the batch
at hand; the references load fp32). llmctl decodes with the layout it measured fastest in every row.

Models are randomly initialised from config (GPT-2 small: 124M parameters; T5 small: 60M), so
nothing is downloaded; the text is meaningless, the work is real. Greedy, 64 new tokens.
References: `transformers.pipeline("text-generation")` for GPT-2 and a plain `model.generate`
call for T5 (transformers 5 has no text2text pipeline). Two workloads: one prompt, and 16
prompts (llmctl batches them; the reference is called prompt by prompt). Both tools run
in one process per model, dtype and workload, timed alternately, each going first in turn (so they meet the same load);
peak memory is sampled during each run; the best of --repeats / --repeats-batch runs is kept.
Results: a markdown table on stdout, bench/results/generate.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2" / "validation.tsv"
NEW_TOKENS = 64
TARGETS = {1: 1.2, 16: 3.0}  # llmctl tokens/s over the reference's, per workload
FALLBACK_PROMPTS = [
    "The film was", "I really enjoyed the acting, but the plot", "Alice works as a teacher in",
    "When did the company open its office in Paris?", "The ending was", "Bob Smith was born in London and",
    "The soundtrack felt", "A powerful performance from", "I hated this movie because",
    "The best part of the story is", "The characters are", "In 1998, the museum", "The sequel is",
    "Grace moved to Tokyo to become a", "The direction was surprisingly", "This is the kind of film that",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prompts() -> list[str]:
    """16 SST-2 validation sentences when ../shared/data is there (varied lengths), else built-in ones."""
    if SST2.is_file():
        lines = SST2.read_text(encoding="utf-8").splitlines()[1:17]
        return [line.rsplit("\t", 1)[0].strip() for line in lines]
    return FALLBACK_PROMPTS


def build_models(dest: Path) -> dict[str, Path]:
    """GPT-2-small and T5-small sized random models with the test suite's small trained tokenizers.
    Ids beyond a tokenizer's vocabulary decode to nothing, which costs both sides the same."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_corpus, train_gpt2_tokenizer, train_t5_tokenizer

    corpus = build_corpus()
    out = {}
    gpt_tok = train_gpt2_tokenizer(corpus)
    gpt_tok.model_max_length = 1024
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(bos_token_id=gpt_tok.eos_token_id, eos_token_id=gpt_tok.eos_token_id))
    t5_tok = train_t5_tokenizer(corpus)
    t5_tok.model_max_length = 512
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(  # t5-small's shape
        vocab_size=32128, d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8,
        pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id, decoder_start_token_id=t5_tok.pad_token_id))
    for name, model, tok in (("gpt2", gpt2, gpt_tok), ("t5", t5, t5_tok)):
        model.save_pretrained(dest / name)
        tok.save_pretrained(dest / name)
        out[name] = dest / name
        log(f"built {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    return out


# -- one measurement, in its own process ---------------------------------------------------
class PeakRss:
    """Highest RSS seen while a block runs (sampled every 2 ms by a thread), minus the RSS at its start:
    the memory generation itself needs on top of the loaded weights."""

    def __enter__(self):
        import threading

        import psutil

        self._process, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.mb = (self.peak - self.start) / 2**20


def measure(family: str, path: str, n_prompts: int, dtype: str, repeats: int) -> dict:
    """Both tools in one process, timed alternately, so machine load hits them alike."""
    import gc

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    texts = prompts()[:n_prompts]
    runners = {"reference": reference_runner(family, path, texts, dtype), "llmctl": llmctl_runner(path, texts, dtype)}
    results = {}
    for tool, run in runners.items():
        run(4)  # warm-up: first-call allocations and kernel selection
        results[tool] = {"seconds": [], "new_tokens": None, "peak_extra_mb": 0.0}
    for repeat in range(repeats):
        # Alternate which tool goes first, so neither always runs on a cache the other warmed.
        for tool, run in (list(runners.items()) if repeat % 2 == 0 else list(runners.items())[::-1]):
            gc.collect()
            with PeakRss() as memory:
                start = time.perf_counter()
                tokens = run(NEW_TOKENS)
                seconds = time.perf_counter() - start
            r = results[tool]
            r["seconds"].append(round(seconds, 3))
            r["new_tokens"] = tokens
            r["peak_extra_mb"] = round(max(r["peak_extra_mb"], memory.mb), 1)
    for r in results.values():
        r["tokens_per_second"] = round(r["new_tokens"] / min(r["seconds"]), 2)
    results["llmctl"]["plan"] = runners["llmctl"].plan
    return {"family": family, "prompts": n_prompts, "dtype": dtype, **results,
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def llmctl_runner(path: str, texts: list[str], dtype: str):
    """llmctl's core, as `llmctl generate` runs it (minus reading prompts and printing)."""
    from llmctl.generation.generate import Settings, encode_prompts, generate
    from llmctl.generation.model import context_limit, generation_kind, load_checked, load_config, load_tokenizer
    from llmctl.generation.model import quiet_transformers

    quiet_transformers()
    config = load_config(path)
    kind = generation_kind(config, path)
    tokenizer, pad_added = load_tokenizer(path, kind)
    gen = load_checked(path, kind, dtype, "cpu", tokenizer=tokenizer, pad_added=pad_added,
                       decode_batch=min(len(texts), 16), config=config)

    def run(new_tokens: int) -> int:
        settings = Settings(max_new_tokens=new_tokens, batch_size=16).check()
        encoded, _ = encode_prompts(texts, [str(i) for i in range(len(texts))], tokenizer, kind,
                                    context_limit(config, tokenizer, kind), settings)
        rows, stats = generate(gen, encoded, settings)
        return stats["new_tokens"]

    run.plan = gen.plan
    return run


def reference_runner(family: str, path: str, texts: list[str], dtype: str):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    transformers.logging.set_verbosity_error()
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "auto": torch.float32}[dtype]  # auto: its default
    tokenizer = AutoTokenizer.from_pretrained(path)
    if family == "gpt2":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()
        model.generation_config.pad_token_id = tokenizer.eos_token_id
        pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")

        def run(new_tokens: int) -> int:
            total = 0
            for text in texts:  # prompt by prompt, as a pipeline user calls it
                out = pipe(text, max_new_tokens=new_tokens, do_sample=False, return_tensors=True)
                total += len(out[0]["generated_token_ids"]) - len(tokenizer(text)["input_ids"])
            return total

        return run
    model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch_dtype).eval()

    def run(new_tokens: int) -> int:
        total = 0
        with torch.inference_mode():
            for text in texts:
                ids = model.generate(**tokenizer(text, return_tensors="pt"), max_new_tokens=new_tokens, do_sample=False)
                total += ids.shape[1] - 1  # batch of one: no padding; the first id is the start token
        return total

    return run


# -- the side-by-side run ---------------------------------------------------------------------
def run_case(args, family: str, path: Path, n: int, dtype: str) -> dict:
    repeats = args.repeats if n == 1 else args.repeats_batch
    cmd = [sys.executable, __file__, "--case", family, str(path), str(n), dtype, "--repeats", str(repeats)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false",
                        "LLMCTL_CACHE_DIR": str(Path(path).parent / "cache")}  # timed afresh in every bench run
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{family} {n} {dtype} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for tool in ("reference", "llmctl"):
        r = result[tool]
        log(f"  {family:5} {dtype:5} {n:2} prompt(s) {tool:9} {r['tokens_per_second']:8.1f} tokens/s  "
            f"+{r['peak_extra_mb']:.0f} MB peak  ({r['seconds']} s)")
    plan = result["llmctl"]["plan"]
    log(f"  llmctl decoded in {plan['precision']}, {plan['layout']} layout ({plan['chosen_by']}; step estimates "
        f"{plan.get('step_ms')})")
    return result


def table(rows: list[dict]) -> str:
    lines = ["| model | dtype | prompts | llmctl tokens/s | reference tokens/s | ratio | target | met "
             "| llmctl peak +MB | reference peak +MB | process peak RSS MB |", "|" + "---|" * 11]
    for r in rows:
        plan = r["llmctl"]["plan"]
        dtype = (f"defaults (llmctl auto: {plan['precision']}; reference: fp32)" if r["dtype"] == "auto" else r["dtype"])
        dtype += f", llmctl {plan['layout']} layout"
        lines.append(f"| {r['family']} | {dtype} | {r['prompts']} | {r['llmctl']['tokens_per_second']:.1f} "
                     f"| {r['reference']['tokens_per_second']:.1f} | {r['ratio']:.2f}x | >= {r['target']:.1f}x "
                     f"| {'yes' if r['met'] else 'NO'} | {r['llmctl']['peak_extra_mb']:.0f} "
                     f"| {r['reference']['peak_extra_mb']:.0f} | {r['process_peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="gpt2,t5")
    parser.add_argument("--dtypes", default=None, help="comma list of fp32,bf16,auto (default: all three where the "
                        "CPU has bf16, else fp32,auto); auto: each tool's default")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per tool, one prompt")
    parser.add_argument("--workloads", default="1,16", help="prompts per workload: 1 and/or 16 (a smoke run: 1)")
    parser.add_argument("--repeats-batch", type=int, default=1, help="timed runs per tool, 16 prompts (slow)")
    parser.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        family, path, n, dtype = args.case
        print(json.dumps(measure(family, path, int(n), dtype, args.repeats)))
        return

    import torch

    from llmctl.models.precision import cpu_supports_bf16

    dtypes = args.dtypes.split(",") if args.dtypes else ["fp32"] + (["bf16"] if cpu_supports_bf16() else []) + ["auto"]
    load_before = os.getloadavg()
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmctl-bench-gen-") as tmp:
        paths = build_models(Path(tmp))
        for family in args.families.split(","):
            for dtype in dtypes:
                for n in (int(k) for k in args.workloads.split(",")):
                    row = run_case(args, family, paths[family], n, dtype)
                    ratio = row["llmctl"]["tokens_per_second"] / row["reference"]["tokens_per_second"]
                    rows.append(row | {"ratio": round(ratio, 3), "target": TARGETS[n], "met": ratio >= TARGETS[n]})
    load_after = os.getloadavg()
    import transformers

    references = {"gpt2": 'transformers.pipeline("text-generation"), called once per prompt',
                  "t5": "model.generate, called once per prompt"}
    md = "\n".join([
        "# Generation: llmctl vs Hugging Face references", "",
        f"Greedy, {NEW_TOKENS} new tokens, random GPT-2-small (124M) / T5-small (60M) sized models; "
        f"prompts: {'16 SST-2 validation sentences' if SST2.is_file() else '16 built-in sentences'}. "
        "llmctl batches the 16 prompts (batch 16); the reference is "
        + "; ".join(f"{k}: {v}" for k, v in references.items()) + ". "
        f"Best of {args.repeats} (1 prompt) / {args.repeats_batch} (16 prompts) timed runs after a warm-up; per model, dtype and workload one process loads "
        "both tools and times them alternately. Peak +MB: the highest RSS (psutil, sampled every 2 ms) "
        "during a tool's run minus the RSS when it started, i.e. memory on top of the loaded weights; "
        "process peak RSS: ru_maxrss of that process (both models loaded).", "",
        table(rows), "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (a shared machine: other jobs ran alongside); "
        f"{(time.time() - started) / 60:.1f} min in all.", ""])
    print(md)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generate.md").write_text(md)
    (out / "generate.json").write_text(json.dumps({
        "rows": rows, "new_tokens": NEW_TOKENS, "repeats": [args.repeats, args.repeats_batch], "load_average": [load_before, load_after],
        "cpus": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
