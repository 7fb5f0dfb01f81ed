"""The data keys of task: causal-lm (plain text, prompt/completion pairs, chat conversations,
pre-training validation in blocks) and the checks between them, before any file is read."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from llmctl.config.schema import DataConfig


class CausalLMData(DataConfig):
    text_column: str = Field("text", description="Column holding plain training text (when no completion_column).")
    prompt_column: str | None = Field(None, description="Column holding the prompt of prompt/completion pairs.")
    completion_column: str | None = Field(
        None, description="Column holding the completion; set it (with prompt_column) to train on completions only.")
    packing: bool = Field(False, description="Concatenate training examples with EOS into max_length blocks.")
    skip_empty: bool = Field(
        False, description="Drop rows whose text (or completion) is empty, with a counted note, instead of "
                           "failing (wikitext has blank lines).")
    eval_blocks: bool = Field(
        False, description="Pre-training validation (nanoGPT's, run_clm's): the whole validation text, each row "
                           "ending in EOS, in consecutive max_length blocks, scored with bits per character and "
                           "per byte as well as loss and perplexity.")
    max_new_tokens: int = Field(64, gt=0, description="Tokens `llmctl predict` generates after each prompt (greedy).")
    messages_column: str = Field(
        "messages", description="Column of chat conversations (lists of {role, content}); used whenever the data "
                                "has it, rendered with the tokenizer's chat template, assistant turns learned.")
    chat_template: bool | str = Field(
        False, description="true: render prompt/completion pairs with the tokenizer's chat template, as a user "
                           "turn and an assistant turn. A Jinja template, or the path of a file holding one: "
                           "the chat template to use (and save with the model) for a base model that has none; "
                           "prompt/completion pairs are then rendered with it too.")

    @field_validator("chat_template")
    @classmethod
    def _template(cls, value):
        # A file is read now: the run's recipe.yaml keeps the template itself, so eval, predict and
        # --resume need not find the file again.
        return template_text(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _pairs(self):
        if (self.prompt_column is None) != (self.completion_column is None):
            raise ValueError("data.prompt_column and data.completion_column go together: set both for "
                             "prompt/completion pairs, or neither for plain text")
        if self.chat_template is True and self.completion_column is None:
            raise ValueError("data.chat_template renders prompt/completion pairs: set data.prompt_column and "
                             "data.completion_column (data with a messages column needs no data.chat_template)")
        return self


def template_text(value: str) -> str:
    """data.chat_template given as text: the Jinja template itself, or read from the file it names."""
    if "{{" in value or "{%" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{value!r} is neither a Jinja chat template (no {{{{ or {{%) nor a file; give the template "
                         "text or the path of a .jinja file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the chat template file {path}: {exc}") from None
