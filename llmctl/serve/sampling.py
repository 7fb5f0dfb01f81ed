"""One sequence's decoding state: picking the next token from the model's logits (greedy, or
sampling with temperature / top_p / a seed, OpenAI's presence and frequency penalties), stop
strings, and the text handed out so far.

Greedy picks the arg-max of the raw logits, as `model.generate` does, so a request's greedy
answer is the one `llmctl generate` gives for the same prompt (fp32; see docs/commands/serve.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmctl.generation.generate import DECODE, first_stop


@dataclass
class Sampling:
    max_new_tokens: int = 16
    temperature: float | None = None  # None or 0: greedy
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the k most likely

    @property
    def greedy(self) -> bool:
        return not self.temperature


class Sequence:
    """What the engine tracks per request (one per choice when n > 1)."""

    def __init__(self, prompt: list[int], sampling: Sampling, emit, eos: set[int], tokenizer):
        self.prompt, self.sampling, self.emit, self.eos, self.tokenizer = prompt, sampling, emit, eos, tokenizer
        self.ids: list[int] = []
        self.sent = 0  # characters of the completion handed out
        self.finished: str | None = None
        self.cancelled = False
        self.hold = max((len(s) for s in sampling.stop), default=1) - 1
        self.generator = None
        self._processors = None

    def pick(self, logits) -> int:
        """The next token from this row's last-position logits (1-D, float32)."""
        import torch

        s = self.sampling
        raw = logits
        if s.presence_penalty or s.frequency_penalty:
            if self.ids:
                ids = torch.tensor(self.ids, device=logits.device)
                counts = torch.bincount(ids, minlength=logits.shape[-1]).to(logits.dtype)
                logits = logits - s.frequency_penalty * counts - s.presence_penalty * (counts > 0).to(logits.dtype)
        if s.greedy:
            token = int(torch.argmax(logits))
        else:
            if self._processors is None:
                from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

                self._processors = LogitsProcessorList([TemperatureLogitsWarper(s.temperature)]
                                                       + ([TopPLogitsWarper(s.top_p)] if s.top_p and s.top_p < 1 else []))
                if s.seed is not None:
                    self.generator = torch.Generator(device=logits.device).manual_seed(s.seed)
            scores = self._processors(None, logits[None].clone())[0]
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        info = None
        if s.logprobs is not None:
            logp = torch.log_softmax(raw.float(), dim=-1)
            top = torch.topk(logp, s.logprobs) if s.logprobs else None
            info = {"token": token, "logprob": float(logp[token]),
                    "top": [] if top is None else list(zip(top.indices.tolist(), top.values.tolist()))}
        self._advance(token, info)
        return token

    def _advance(self, token: int, info) -> None:
        s = self.sampling
        if token in self.eos:
            self.ids.append(token)
            self._hand_out(self._text(self.ids[:-1]), final=True, info=info, upto=None)
            self.finished = "stop"
            return
        self.ids.append(token)
        text = self._text(self.ids)
        hit = first_stop(text, s.stop)
        if hit is not None:
            self.finished = "stop"
            self._hand_out(text, final=True, info=info, upto=hit)
        elif len(self.ids) >= s.max_new_tokens:
            self.finished = "length"
            self._hand_out(text, final=True, info=info, upto=None)
        else:
            self._hand_out(text, final=False, info=info, upto=None)

    def _text(self, ids) -> str:
        return self.tokenizer.decode(ids, **DECODE)

    def _hand_out(self, text: str, final: bool, info, upto: int | None) -> None:
        """Hand out the text that can no longer change: held back while it could still become a
        stop string or is a half-decoded UTF-8 character, never past a stop string."""
        if upto is None:
            upto = len(text) if final else len(text.rstrip("\ufffd")) - self.hold
        piece = text[self.sent:upto] if upto > self.sent else ""
        self.sent = max(self.sent, upto)
        if piece or info is not None:
            self.emit({"type": "delta", "text": piece, "logprob": info})

    def usage(self) -> dict:
        return {"prompt_tokens": len(self.prompt), "completion_tokens": len(self.ids)}
