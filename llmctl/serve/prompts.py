"""From an OpenAI request to token ids and decoding settings, with every refusal a 400 that
names the field: the server's limits, the chat template, the model's context."""

from __future__ import annotations

from llmctl.serve.service import ApiError, Service
from llmctl.serve.sampling import Sampling

ROLES = ("system", "user", "assistant")
MAX_N = 16
MAX_STOPS = 4
MAX_TOP_LOGPROBS = 20


def check_model(service: Service, name: str | None) -> None:
    if name is not None and name != service.name:
        raise ApiError(404, f"The model '{name}' does not exist; this server serves '{service.name}'.",
                       param="model", code="model_not_found")


def sampling(service: Service, body, max_tokens: int | None, logprobs: int | None) -> Sampling:
    if service.engine is None:
        route = "/v1/embeddings" if service.embedder is not None else "/v1/predict"
        raise ApiError(400, f"'{service.name}' is a task model; it answers POST {route}, not text generation.",
                       code="wrong_endpoint")
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(400, f"max_tokens must be at least 1 (got {max_tokens}).", param="max_tokens")
    if max_tokens is not None and max_tokens > service.max_tokens:
        raise ApiError(400, f"max_tokens {max_tokens} is above this server's limit of {service.max_tokens} "
                       "(llmctl serve --max-tokens).", param="max_tokens")
    if body.temperature is not None and not 0 <= body.temperature <= 2:
        raise ApiError(400, f"temperature must be between 0 and 2 (got {body.temperature}).", param="temperature")
    if body.top_p is not None and not 0 < body.top_p <= 1:
        raise ApiError(400, f"top_p must be in (0, 1] (got {body.top_p}).", param="top_p")
    for key in ("presence_penalty", "frequency_penalty"):
        value = getattr(body, key)
        if value is not None and not -2 <= value <= 2:
            raise ApiError(400, f"{key} must be between -2 and 2 (got {value}).", param=key)
    if not 1 <= body.n <= MAX_N:
        raise ApiError(400, f"n must be between 1 and {MAX_N} (got {body.n}).", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOPS or any(s == "" for s in stops):
        raise ApiError(400, f"stop takes up to {MAX_STOPS} non-empty strings.", param="stop")
    if logprobs is not None and not 0 <= logprobs <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"logprobs must be between 0 and {MAX_TOP_LOGPROBS} (got {logprobs}).", param="logprobs")
    return Sampling(max_new_tokens=max_tokens or service.max_tokens, temperature=body.temperature,
                    top_p=body.top_p, seed=body.seed, stop=stops, presence_penalty=body.presence_penalty or 0.0,
                    frequency_penalty=body.frequency_penalty or 0.0, logprobs=logprobs)


def chat_ids(service: Service, messages) -> list[int]:
    from llmctl.errors import DataError
    from llmctl.generation.prompts import Prompt, chat_prompt

    tokenizer = service.gen.tokenizer
    if not messages:
        raise ApiError(400, "messages must hold at least one message.", param="messages")
    if not getattr(tokenizer, "chat_template", None):
        raise ApiError(400, f"The tokenizer of '{service.name}' has no chat template; send plain text to "
                       "/v1/completions instead.", param="messages", code="no_chat_template")
    plain = []
    for k, message in enumerate(messages):
        if message.role not in ROLES:
            raise ApiError(400, f"messages[{k}].role '{message.role}' is not one of {', '.join(ROLES)}.",
                           param=f"messages[{k}].role")
        content = message.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise ApiError(400, f"messages[{k}].content: only text parts are supported.",
                               param=f"messages[{k}].content")
            content = "".join(part.text or "" for part in content)
        plain.append({"role": message.role, "content": content or ""})
    if plain[-1]["role"] == "assistant":
        raise ApiError(400, "The last message is the assistant's; end with a user message.", param="messages")
    try:
        text = chat_prompt(tokenizer, Prompt(plain[-1]["content"], "messages", plain), None)
    except DataError as exc:
        raise ApiError(400, str(exc).split(": ", 1)[-1], param="messages") from None
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def text_ids(service: Service, prompt: str, param: str) -> list[int]:
    ids = service.gen.tokenizer(prompt)["input_ids"]
    if not ids:
        raise ApiError(400, f"{param} encodes to no tokens; give some text to continue.", param=param)
    return ids


def fit(service: Service, ids: list[int], settings: Sampling, asked: int | None, param: str) -> Sampling:
    """Refuse a prompt the context cannot hold; without max_tokens, generate up to what fits."""
    import dataclasses

    limit = service.context
    if limit is None:
        return settings
    if service.kind == "seq2seq":
        if len(ids) > limit:
            raise ApiError(400, f"{param} has {len(ids)} tokens; this model reads at most {limit}.", param=param,
                           code="context_length_exceeded")
        return settings
    room = limit - len(ids)
    if room < 1 or (asked is not None and asked > room):
        wanted = asked or 1
        raise ApiError(400, f"This model's context is {limit} tokens; {param} has {len(ids)} and {wanted} more were "
                       "asked for. Shorten the prompt or lower max_tokens.", param=param, code="context_length_exceeded")
    return dataclasses.replace(settings, max_new_tokens=min(settings.max_new_tokens, room))
