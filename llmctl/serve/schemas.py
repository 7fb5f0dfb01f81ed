"""Request bodies of the OpenAI-compatible routes. Fields OpenAI defines that llmctl does not use
are accepted and ignored, as OpenAI ignores unknown ones (extra="ignore"); wrong types are 422,
values out of range 400 (checked in routes.py, which names the field)."""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class Message(_Body):
    role: str
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None


class ChatRequest(_Generation):
    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(_Generation):
    prompt: Union[str, list[str]]
    logprobs: int | None = None
    echo: bool = False


class PredictRequest(_Body):
    model: str | None = None
    inputs: list[Union[dict[str, Any], str]]
    top_k: int | None = None
