"""`llmctl generate MODEL [PROMPT ...]`: stream one prompt on a terminal, otherwise one jsonl row per prompt."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from llmctl.cli import app, report_errors


@app.command()
@report_errors
def generate(
    model: str = typer.Argument(..., help="GPT-2- or T5-family model: hub id, saved-model folder or run directory."),
    prompts: list[str] = typer.Argument(None, help="Prompts; default: --file, else lines from stdin."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="txt (one prompt per line) or jsonl ({\"prompt\": ...})."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Most tokens to generate per prompt."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding (implied by the next three)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Sample among the k most likely tokens."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Sample among the most likely tokens holding this probability."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search with this many beams (1: none)."),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help="Above 1.0 discourages repeats."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable); the completion ends just before it."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for reproducible sampling."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts generated together."),
    chat: bool = typer.Option(False, "--chat", help="Wrap each prompt in the tokenizer's chat template."),
    truncate_left: bool = typer.Option(False, "--truncate-left", help="Cut prompts too long for the context from the left."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where supported), fp32, bf16 or fp16."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    json_out: bool = typer.Option(False, "--json", help='Print one JSON object {"results": [...], "stats": {...}}.'),
):
    """Continue prompts with a GPT-2- or T5-family model."""
    from llmctl.errors import UsageError
    from llmctl.generation.generate import Settings
    from llmctl.generation.prompts import read_prompts

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"--precision {precision!r} is not one of auto, fp32, bf16, fp16.")
    settings = Settings(max_new_tokens=max_new_tokens, sample=sample, temperature=temperature, top_k=top_k,
                        top_p=top_p, num_beams=num_beams, repetition_penalty=repetition_penalty, stop=list(stop),
                        seed=seed, batch_size=batch_size, chat=chat, truncate_left=truncate_left).check()
    items = read_prompts(prompts or [], file)

    from llmctl.generation.run import generate_text

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    streaming = sys.stdout.isatty() and not json_out
    out = generate_text(model, items, settings, precision=precision, device=device,
                        stream=write if streaming else None)
    stats = out["stats"]
    if json_out:
        print(json.dumps({"results": out["results"], "stats": stats}))
        return
    if out["streamed"]:
        print()
        print(f"[{out['results'][0]['finish_reason']}]", file=sys.stderr)
    else:
        for row in out["results"]:
            print(json.dumps(row))
    print(f"generated {stats['new_tokens']} tokens for {stats['prompts']} prompt(s) in {stats['runtime_s']:.2f}s "
          f"({stats['tokens_per_second']} tokens/s, {stats['precision']}, {stats['device']})", file=sys.stderr)
