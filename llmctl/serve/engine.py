"""The engine: one thread owns the model and runs the decoding loop.

Requests wait in a bounded queue; before every step the engine drops the sequences that finished
or whose client went away, admits waiting ones up to `max_batch` (each prefilled alone, then part
of the batch at the next step), and runs one step for all of them. Each sequence hands its events
to the `emit` callback it came with: {"type": "delta", "text", "logprob"} as text becomes final,
then {"type": "done", "finish_reason", "usage"} or {"type": "error", "message"}.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from llmctl import faults
from llmctl.serve.batch import CausalBatch, CausalRows, Seq2SeqBatch, spliceable_cache
from llmctl.serve.cache import moves, release_freed
from llmctl.serve.sampling import Sampling, Sequence

_log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class Engine:
    def __init__(self, gen, max_batch: int = 16, max_queue: int = 64, metrics=None):
        from llmctl.generation.generate import eos_ids

        self.gen, self.max_batch, self.max_queue, self.metrics = gen, max_batch, max_queue, metrics
        self.eos = eos_ids(gen.model)
        if gen.kind == "causal":
            batch_class = CausalBatch if spliceable_cache(gen.model) else CausalRows
        else:
            batch_class = Seq2SeqBatch
        self.batch = batch_class(gen.model, gen.device)
        # One forward pass per step for the whole batch, or (caches CausalRows keeps) one per sequence.
        self.shared_forward = batch_class is not CausalRows
        self.waiting: collections.deque = collections.deque()
        self.lock = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="llmctl-engine", daemon=True)
        self.step_seconds = 0.0  # exponential average, for Retry-After
        self.steps = 0

    def start(self) -> "Engine":
        self.thread.start()
        return self

    def submit(self, jobs: list[tuple]) -> list[Sequence]:
        """Queue (prompt ids, Sampling, emit) sequences, all or none: QueueFull when more than
        `max_queue` would be left waiting for a batch slot. Those the batch's free slots take at the
        next step do not count: a burst on an idle server with --max-batch 8 --max-queue 4 holds 12."""
        seqs = [Sequence(prompt, sampling, emit, self.eos, self.gen.tokenizer) for prompt, sampling, emit in jobs]
        now = time.perf_counter()
        with self.lock:
            if self.closing:
                raise QueueFull()
            free = max(0, self.max_batch - len(self.batch))
            if len(self.waiting) + len(seqs) > self.max_queue + free:
                raise QueueFull()
            for seq in seqs:
                seq.queued_at = now
                self.waiting.append(seq)
            self.lock.notify()
        return seqs

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free: a whole wave of the running batch."""
        return max(1, round(self.step_seconds * 64 * max(1, len(self.waiting)) / max(1, self.max_batch)))

    @property
    def queued(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.batch)

    def busy(self) -> int:
        return self.queued + self.running

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        while True:
            with self.lock:
                while not self.closing and not self.waiting and not len(self.batch):
                    self.lock.wait()
                if self.closing:
                    return
            try:
                with torch.inference_mode():
                    self._cycle()
            except Exception as exc:  # a failed step fails its sequences, never the server
                _log.exception("decoding step failed")
                self._fail_all(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def _cycle(self) -> None:
        moved = moves()
        try:
            self._admit_and_step()
        finally:
            # Caches spliced, cut, grown or dropped (the batch emptied): their old blocks are free now.
            if moves() != moved or not len(self.batch):
                release_freed()

    def _admit_and_step(self) -> None:
        self._retire()
        joining = []
        with self.lock:
            while self.waiting and len(self.batch) + len(joining) < self.max_batch:
                seq = self.waiting.popleft()
                if not seq.cancelled:
                    joining.append(seq)
        if joining:
            passes = self.batch.add(joining)
            if self.metrics:
                now = time.perf_counter()
                for seq in joining:
                    self.metrics.observe_wait(now - seq.queued_at)
                for size in passes:
                    self.metrics.observe_prefill(size)
            self._count(len(joining))
        self._retire()
        if len(self.batch):
            self.steps += 1
            faults.hook("decode", step=self.steps)
            self._retire()  # a client may have gone while the step waited
            if not len(self.batch):
                return
            start = time.perf_counter()
            self.batch.step()
            took = time.perf_counter() - start
            self.step_seconds = took if not self.step_seconds else 0.9 * self.step_seconds + 0.1 * took
            self._count(len(self.batch))
            if self.metrics:
                self.metrics.observe_batch(len(self.batch))

    def _count(self, tokens: int) -> None:
        if self.metrics:
            self.metrics.add_tokens(tokens)

    def _retire(self) -> None:
        keep = []
        for i, seq in enumerate(self.batch.rows):
            if seq.finished:
                seq.emit({"type": "done", "finish_reason": seq.finished, "usage": seq.usage()})
            elif not seq.cancelled:
                keep.append(i)
        if len(keep) != len(self.batch):
            self.batch.drop(keep)

    def _fail_all(self, message: str) -> None:
        for seq in self.batch.rows:
            seq.emit({"type": "error", "message": message})
        self.batch.drop([])
