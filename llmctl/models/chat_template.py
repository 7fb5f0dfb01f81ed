"""Render a tokenizer's chat template within a time and size budget.

A chat template is code that ships with a model: transformers renders it in jinja's sandbox,
which stops attribute tricks but not work, so `{% for i in range(100000) %}{% for j in
range(100000) %}` hung `generate --chat` (and chat fine-tuning) for good. Every render goes
through `render()`: a watchdog thread raises an exception inside a render still running after
SECONDS (the template is Python bytecode, so the exception lands at its next loop step), and
text over OUTPUT_LIMIT characters is refused. Real templates take well under a millisecond.

Why a watchdog and not a trace function counting template lines: tracing turns off CPython's
specialising interpreter for everything apply_chat_template runs, which made every render of
every training conversation three times slower; the watchdog costs two lock round trips.

The template is the model's: running past the budget is exit 5 (the model cannot be used),
naming the model and the limit.
"""

from __future__ import annotations

import threading
import time

from llmctl.errors import ModelError

SECONDS = 10.0
OUTPUT_LIMIT = 64 * 1024 * 1024  # characters of rendered text: far past any model's context


class _OverBudget(BaseException):
    """Raised inside the template; a BaseException so jinja's `except Exception` does not wrap it."""


class _Watchdog:
    """One daemon thread for the process, asleep unless a render is running."""

    def __init__(self):
        self.cond = threading.Condition()
        self.job: tuple[int, float] | None = None  # (thread id, deadline) of the running render
        self.fired = False
        self.idle = False  # waiting without a deadline: only then must start() wake it
        threading.Thread(target=self._watch, name="llmctl-chat-template-watchdog", daemon=True).start()

    def start(self, seconds: float) -> None:
        with self.cond:
            self.job, self.fired = (threading.get_ident(), time.monotonic() + seconds), False
            if self.idle:  # else it is asleep until an earlier deadline, and then sees this later one
                self.cond.notify()

    def stop(self) -> bool:
        """End the watch; True when the render ran out of time. An exception sent but not yet
        raised (the render finished in the same instant) is withdrawn: the caller refuses anyway."""
        with self.cond:
            job, self.job = self.job, None
            fired = self.fired
        if fired and job is None:
            _send(threading.get_ident(), None)
        return fired

    def _watch(self) -> None:
        with self.cond:
            while True:
                if self.job is None:
                    self.idle = True
                    self.cond.wait()
                    self.idle = False
                    continue
                thread, deadline = self.job
                left = deadline - time.monotonic()
                if left > 0:
                    self.cond.wait(left)
                    continue
                self.job, self.fired = None, True
                _send(thread, _OverBudget)


def _send(thread: int, exc) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exc) if exc else None)


_DOG: list[_Watchdog] = []
_DOG_LOCK, _RENDER_LOCK = threading.Lock(), threading.Lock()


def _watchdog() -> _Watchdog:
    with _DOG_LOCK:
        if not _DOG:
            _DOG.append(_Watchdog())
        return _DOG[0]


def render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """tokenizer.apply_chat_template(messages) as text, refused (ModelError) past the budget."""
    dog = _watchdog()
    with _RENDER_LOCK:  # the watchdog watches one render at a time
        try:
            dog.start(SECONDS)
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=add_generation_prompt)
            finally:
                fired = dog.stop()
        except _OverBudget:
            fired = True
    if fired:
        raise _refusal(tokenizer, f"ran past {SECONDS:g} seconds")
    if len(text) > OUTPUT_LIMIT:
        raise _refusal(tokenizer, f"wrote {len(text):,} characters, over the limit of {OUTPUT_LIMIT:,}")
    return text


def _refusal(tokenizer, what: str) -> ModelError:
    return ModelError(f"the chat template of '{tokenizer.name_or_path}' {what} rendering one conversation "
                      "(a loop without end, or far too long); llmctl stopped it.",
                      "Fix the template (chat_template.jinja or tokenizer_config.json's chat_template) "
                      "or use another model.")
