"""Render a tokenizer's chat template within a budget.

A chat template is code that ships with a model: transformers renders it in jinja's sandbox,
which stops attribute tricks but not work, so `{% for i in range(100000) %}{% for j in
range(100000) %}` hangs `generate --chat` (and chat fine-tuning) for good. Every render goes
through `render()`, which counts the template's executed lines (each loop iteration runs at
least one) with a trace function limited to the template's own frames, and refuses a template
that runs past STEP_LIMIT steps or writes more than OUTPUT_LIMIT characters. Counting steps,
not seconds, makes the limit the same on a slow and a fast machine.

The template is the model's: running past the budget is exit 5 (the model cannot be used),
naming the model and the limit.
"""

from __future__ import annotations

import sys

from llmctl.errors import ModelError

# Real templates take tens of steps per message; a 1,000-turn conversation stays far below.
STEP_LIMIT = 2_000_000
OUTPUT_LIMIT = 64 * 1024 * 1024  # characters of rendered text: far past any model's context
_TEMPLATE_FILE = "<template>"  # the file name jinja compiles from_string templates under


class _OverBudget(BaseException):
    """Raised inside the template; a BaseException so jinja's `except Exception` does not wrap it."""


class _Counter:
    def __init__(self, limit: int):
        self.left = limit

    def enter(self, frame, event, arg):
        # Only the template's frames are traced line by line; the libraries run untraced.
        return self.line if frame.f_code.co_filename == _TEMPLATE_FILE else None

    def line(self, frame, event, arg):
        if event == "line":
            self.left -= 1
            if self.left < 0:
                raise _OverBudget
        return self.line


def render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """tokenizer.apply_chat_template(messages) as text, refused (ModelError) past the budget."""
    counter, previous = _Counter(STEP_LIMIT), sys.gettrace()
    sys.settrace(counter.enter)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except _OverBudget:
        raise _refusal(tokenizer, f"ran past {STEP_LIMIT:,} template steps") from None
    finally:
        sys.settrace(previous)  # a coverage tool's tracer, or None
    if len(text) > OUTPUT_LIMIT:
        raise _refusal(tokenizer, f"wrote {len(text):,} characters, over the limit of {OUTPUT_LIMIT:,}")
    return text


def _refusal(tokenizer, what: str) -> ModelError:
    return ModelError(f"the chat template of '{tokenizer.name_or_path}' {what} rendering one conversation "
                      "(a loop without end, or far too long); llmctl stopped it.",
                      "Fix the template (chat_template.jinja or tokenizer_config.json's chat_template) "
                      "or use another model.")
