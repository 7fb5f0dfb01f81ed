"""`llmctl generate MODEL [PROMPT ...]`: stream one prompt on a terminal, otherwise one jsonl row per prompt."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import batch_size_option, json_flag


@app.command()
def generate(
    model: str = typer.Argument(..., metavar="MODEL",
                                help="Decoder LM (GPT-2, Llama, Qwen2, ...) or T5-family model: hub id, saved-model folder, run directory or .gguf file."),
    prompts: list[str] = typer.Argument(None, metavar="PROMPT",
                                        help="Prompts; default: --file, else lines from stdin."),
    file: Optional[str] = typer.Option(None, "--file", "-f", metavar="FILE",
                                       help="txt (one prompt per line), jsonl ({\"prompt\": ...} "
                                       "or {\"messages\": [...]} with --chat), or csv / tsv with a 'prompt' column."),
    prompt_column: str = typer.Option("prompt", "--prompt-column", metavar="NAME",
                                      help="Field of jsonl rows / column of csv, tsv, parquet files holding the prompt."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Write the jsonl rows to FILE instead of stdout (nothing is streamed)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", metavar="N", help="Most tokens to generate per prompt."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding (implied by the next three); "
                                "from the whole distribution unless they restrict it."),
    temperature: Optional[float] = typer.Option(None, "--temperature", metavar="T",
                                                help="Sampling temperature (default 1.0)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", metavar="K",
                                        help="Sample among the k most likely tokens (default, and 0: off)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", metavar="P",
                                          help="Sample among the most likely tokens holding this "
                                          "probability (default 1.0: off)."),
    num_beams: int = typer.Option(1, "--num-beams", metavar="N", help="Beam search with this many beams (1: none)."),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", metavar="PENALTY",
                                                       help="Above 1.0 discourages repeats."),
    stop: list[str] = typer.Option([], "--stop", metavar="TEXT",
                                   help="Stop string (repeatable); the completion ends just before it."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Seed for reproducible sampling."),
    batch_size: int = batch_size_option(16, "Prompts generated together. In bf16/fp16 a prompt's output can "
                                        "depend on its batch; use fp32 or 1 for batch-independent output."),
    chat: bool = typer.Option(False, "--chat", help="Wrap each prompt in the tokenizer's chat template."),
    system: Optional[str] = typer.Option(None, "--system", metavar="TEXT",
                                         help="System message for every prompt (with --chat)."),
    truncate_left: bool = typer.Option(False, "--truncate-left", help="Cut prompts too long for the context from the left."),
    precision: str = typer.Option("auto", "--precision", metavar="PRECISION",
                                  help="auto (bf16 where supported), fp32, bf16 or fp16."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE",
                                         help="cpu, cuda or mps (default: cuda when available)."),
    json_out: bool = json_flag('Print one JSON object {"results": [...], "stats": {...}}.'),
):
    """Continue prompts with a decoder LM (GPT-2, Llama, Qwen2, ...) or a T5-family model."""
    from llmctl.core.generate import check_options, generate_text
    from llmctl.generation.generate import Settings
    from contextlib import nullcontext

    from llmctl.cli._rows import RowPrinter, open_output
    from llmctl.generation.prompts import read_prompts

    settings = Settings(max_new_tokens=max_new_tokens, sample=sample, temperature=temperature, top_k=top_k,
                        top_p=top_p, num_beams=num_beams, repetition_penalty=repetition_penalty, stop=list(stop),
                        seed=seed, batch_size=batch_size, chat=chat, system=system, truncate_left=truncate_left)
    device = check_options(settings, precision, device)  # before prompts are read or the model is looked at
    if output is not None:
        from llmctl.core.checks import writable_file

        writable_file(output, "--output")
    items = read_prompts(prompts or [], file, column=prompt_column)

    streamed = []

    def write(text: str) -> None:
        streamed.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    sink = open_output(output)
    printer = RowPrinter(len(items), json_mode=json_out and sink is None, out=sink)
    streaming = sys.stdout.isatty() and not json_out and sink is None
    with printer.sigint_between_rows(), sink or nullcontext():
        try:
            out = generate_text(model, items, settings, precision=precision, device=device,
                                stream=write if streaming else None, on_rows=printer.add)
        except KeyboardInterrupt:
            if streamed:
                from llmctl.errors import Interrupted

                print(flush=True)  # end the streamed line
                raise Interrupted("interrupted; the text above is the completion so far.") from None
            raise printer.interrupted() from None
    stats = out["stats"]
    if out["streamed"]:
        print()
        print(f"[{out['results'][0]['finish_reason']}]", file=sys.stderr)
    else:
        printer.finish(stats)
    if sink is not None:
        print(f"wrote {len(items)} rows to {output}", file=sys.stderr)
        if json_out:
            from llmctl.console import print_json

            print_json({"output": output, "count": len(items), "stats": stats})
    if json_out:
        return
    print(f"generated {stats['new_tokens']} tokens for {stats['prompts']} prompt(s) in {stats['runtime_s']:.2f}s "
          f"({stats['tokens_per_second']} tokens/s, {stats['precision']}, {stats['device']})", file=sys.stderr)
