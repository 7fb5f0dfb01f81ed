"""Hand a completion to the caller as it is generated (one prompt; the command writes it to stdout
on a terminal). Text is held back while it could still turn into a stop string, and never handed
over past one, so what appears on screen is exactly the completion `finish` returns.
"""

from __future__ import annotations

from llmctl.generation.generate import DECODE, first_stop


class StopAwareStreamer:
    """A transformers streamer (put/end) for a batch of one; `write` receives text pieces."""

    def __init__(self, tokenizer, stops: list[str], write, eos: set[int]):
        self.tokenizer, self.stops, self.write, self.eos = tokenizer, stops, write, eos
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.printed = 0
        self.seen_first = False
        self.done = False

    def put(self, value) -> None:
        values = value.reshape(-1).tolist()
        if not self.seen_first:
            # generate() first pushes the prompt (decoder-only) or the decoder start token.
            self.seen_first = True
            return
        if self.done:
            return
        for token in values:
            if token in self.eos:
                self.done = True
                break
            self.ids.append(token)
        self._emit(final=self.done)

    def end(self) -> None:
        if not self.done:
            self._emit(final=True)
        self.done = True

    def _emit(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, **DECODE)
        hit = first_stop(text, self.stops)
        if hit is not None:
            self.done, upto = True, hit
        elif final:
            upto = len(text)
        else:
            # A half-decoded UTF-8 character shows as U+FFFD until its last byte arrives.
            upto = len(text.rstrip("\ufffd")) - self.hold
        if upto > self.printed:
            self.write(text[self.printed:upto])
            self.printed = upto
