"""Chat data for causal-LM fine-tuning: conversations checked, rendered with the tokenizer's chat
template, and labelled so that the loss covers the assistant turns only.

A conversation is a list of {"role", "content"} messages (OpenAI style). Each one is rendered
once whole; each assistant turn's place in that text is found by rendering the messages before
it with the generation prompt (the text the turn starts after) and the messages up to it (the
text it ends before). Within that stretch the learned tokens are the assistant's content and
the turn's end marker: everything from the content up to the first special token after it
(`<|im_end|>` in ChatML, `<|eot_id|>` in Llama 3), or to the end of the turn when the template
closes turns with plain text. Role headers, the generation prompt, text a template puts before
the content (an empty `<think>` block) and the newline after the marker are not learned. This
works for any template whose renders of a conversation's prefixes are prefixes of the whole,
which is checked; tokens are matched to the text by their character offsets.
"""

from __future__ import annotations

from llmctl.data.sources import row_location
from llmctl.errors import DataError, RecipeError

ROLES = ("system", "developer", "user", "assistant", "tool")


def conversation(value, at: str, ends_with: str) -> list[dict]:
    """`value` (one row's messages; `at` names the row) checked and reduced to role and content;
    the last message must have the role `ends_with` (assistant to learn from, user to answer)."""
    shape = 'a list of {"role": ..., "content": ...} messages'
    if hasattr(value, "tolist"):  # a parquet list column comes back from pandas as a numpy array
        value = value.tolist()
    if not isinstance(value, list) or not value:
        missing = value is None or (isinstance(value, float) and value != value)  # a row without it: None or NaN
        got = ("nothing" if missing else "an empty list" if isinstance(value, list)
               else f"{type(value).__name__} {str(value)[:40]!r}")
        raise DataError(f"{at}: the messages column holds {got}; it must be {shape}.", "Fix that row.")
    out = []
    for turn, message in enumerate(value, 1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(f"{at}: message {turn} is {str(message)[:60]}; the messages column must be {shape}.",
                            "Fix that row.")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise DataError(f"{at}: message {turn} has the unknown role {role!r}.",
                            f"Use one of {', '.join(ROLES)}.")
        if not isinstance(content, str):
            raise DataError(f"{at}: message {turn} ({role}) has content of type {type(content).__name__}, "
                            "not a string.", "Give each message's content as text.")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != ends_with:
        if ends_with == "assistant":
            raise DataError(f"{at}: the conversation ends with {_a(out[-1]['role'])} turn, not an assistant turn, "
                            "so its last turn teaches nothing.",
                            "End it with the assistant's answer or drop that turn.")
        raise DataError(f"{at}: the conversation to answer ends with {_a(out[-1]['role'])} turn.",
                        "End it with the user turn to answer.")
    return out


def _a(role: str) -> str:
    return f"an {role}" if role == "assistant" else f"a {role}"


def require_template(tokenizer, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise RecipeError(f"model.name_or_path: the tokenizer of '{model}' has no chat template, so chat data "
                          "(a messages column or data.chat_template) cannot be rendered.",
                          "Use a chat/instruct model, or give the data as prompt/completion columns without "
                          "data.chat_template.")


def _render(tokenizer, messages: list[dict], prompt: bool = False) -> str:
    from llmctl.models.chat_template import render

    return render(tokenizer, messages, add_generation_prompt=prompt)


def _assistant_spans(tokenizer, messages: list[dict], text: str, where_row: str) -> list[tuple[int, int]]:
    """(start, end) characters of `text` each assistant turn adds after its generation prompt."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, upto = _render(tokenizer, messages[:i], prompt=True), _render(tokenizer, messages[: i + 1])
        start, end = len(before), len(upto)
        if not (text.startswith(before) and text.startswith(upto) and start <= end):
            raise DataError(f"{where_row}: the chat template renders the conversation up to message {i + 1} as text "
                            "that is not the start of the whole conversation, so the assistant turn cannot be "
                            "located.", "Use a template that renders conversations incrementally.")
        spans.append((start, end))
    return spans


def _learned(text: str, span: tuple[int, int], content: str, specials: list[tuple[int, int]]) -> tuple[int, int]:
    """The characters of one assistant turn that are learned: its content through the end marker."""
    start, end = span
    # Templates that trim the content are found by the trimmed text.
    found = next(((at, len(c)) for c in (content, content.strip()) if c and (at := text.find(c, start, end)) >= 0),
                 None)
    first, after = (found[0], found[0] + found[1]) if found else (start, start)
    marker = next((e for s, e in specials if s >= after and e <= end), None)
    return first, marker if marker is not None else end


def examples(conversations: list[list[dict]], tokenizer, where: str, indices: list[int] | None = None,
             header: bool = True) -> tuple[list[list[int]], list[list[int]]]:
    """(input ids, labels) per conversation: the rendered template, with every token that is not an
    assistant turn's content or end marker labelled -100. `indices` number the rows for errors."""
    texts = [_render(tokenizer, messages) for messages in conversations]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    special_ids = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids_out, labels_out = [], []
    for n, (messages, text) in enumerate(zip(conversations, texts)):
        row = row_location(where, indices[n] if indices is not None else n, header)
        ids, offsets = encoded["input_ids"][n], encoded["offset_mapping"][n]
        specials = [tuple(o) for t, o in zip(ids, offsets) if t in special_ids]
        contents = [m["content"] for m in messages if m["role"] == "assistant"]
        learned = [_learned(text, span, content, specials)
                   for span, content in zip(_assistant_spans(tokenizer, messages, text, row), contents)]
        # A token is learned when it starts inside a learned stretch (a token the template's text
        # and the content share, were there one, counts with the side it starts on).
        labels = [t if any(a <= s < b for a, b in learned) else -100 for t, (s, _) in zip(ids, offsets)]
        if all(label == -100 for label in labels):
            raise DataError(f"{row}: no token of the conversation is an assistant turn's content.",
                            "Give the assistant turns some content.")
        ids_out.append(list(ids))
        labels_out.append(labels)
    return ids_out, labels_out


def prompts(conversations: list[list[dict]], tokenizer) -> list[list[int]]:
    """Token ids of each conversation rendered with the generation prompt, for the model to answer."""
    texts = [_render(tokenizer, messages, prompt=True) for messages in conversations]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]
