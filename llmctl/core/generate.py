"""`llmctl generate` as a function: prompts in, completions with finish reasons and stats out.

Everything that can be checked without weights (settings, model family, tokenizer, prompt
lengths, chat template) is checked before the model loads.
"""

from __future__ import annotations

import logging

from llmctl.generation.generate import Settings, encode_prompts, eos_ids, generate
from llmctl.generation.model import context_limit, load_checked, prepare
from llmctl.generation.prompts import Prompt

# Rendered by llmctl.console (route_logs): generation never prints.
_log = logging.getLogger(__name__)


def check_options(settings: Settings, precision: str, device: str | None) -> str:
    """The options alone, before prompts are read or the model is looked at; returns the device."""
    from llmctl.errors import UsageError
    from llmctl.models.devices import device_type
    from llmctl.models.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
    settings.check()
    return device_type(device)


def generate_text(model: str, prompts: list[Prompt], settings: Settings, precision: str = "auto",
                  device: str | None = None, stream=None, warn=_log.warning, on_rows=None) -> dict:
    """Returns {"model", "results": [{"prompt" (or "messages"), "completion", "finish_reason",
    "prompt_tokens", "completion_tokens"}], "stats", "streamed"}. `stream(text)` receives a single
    prompt's completion piece by piece; otherwise `on_rows([(position, result), ...])` receives
    each batch's results as soon as it is done."""
    from llmctl.generation.decoding import describe_dropped, token_ids_only

    device = check_options(settings, precision, device)  # --device tpu: one line, exit 2, before anything loads
    source, config, kind, tokenizer, pad_added = prepare(model)
    encoded, truncated = encode_prompts([p.text for p in prompts], [p.where for p in prompts], tokenizer, kind,
                                        context_limit(config, tokenizer, kind), settings, prompts)
    if truncated:
        warn(f"{truncated} prompt(s) too long for the model's context were cut from the left (--truncate-left).")
    if pad_added:
        warn(f"the tokenizer of '{source}' has no pad token; padding with its eos token "
             f"{tokenizer.eos_token!r} (padded positions are masked out, so completions do not change).")
    rows = min(len(encoded), settings.batch_size) * settings.num_beams  # decoded together: what to time
    gen = load_checked(source, kind, precision, device, tokenizer=tokenizer, pad_added=pad_added, size_checked=True,
                       decode_batch=rows, config=config)
    dropped = token_ids_only(gen.model)
    if dropped:
        warn(describe_dropped(dropped))
    streamer = None
    if stream is not None and len(prompts) == 1 and settings.num_beams == 1:
        from llmctl.generation.stream import StopAwareStreamer

        streamer = StopAwareStreamer(tokenizer, settings.stop, stream, eos_ids(gen.model))

    def done(pairs):
        on_rows([(i, prompts[i].echo() | row) for i, row in pairs])

    rows, stats = generate(gen, encoded, settings, streamer, done if on_rows and streamer is None else None)
    results = [p.echo() | row for p, row in zip(prompts, rows)]
    return {"model": source, "results": results, "stats": stats, "streamed": streamer is not None}
