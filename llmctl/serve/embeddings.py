"""POST /v1/embeddings in OpenAI's shape, for an embedding run or a sentence-transformers folder:
`input` a text or a list of texts (token arrays are refused: the server tokenizes), vectors as
`llmctl embed` computes them, as floats or base64 (little-endian float32, what OpenAI sends and its
client asks for by default), `usage.prompt_tokens` the tokens the model saw (after its max_length).
Concurrent requests share forward passes through the same worker as /v1/predict."""

from __future__ import annotations

import base64
from typing import Any, Union

from llmctl.serve.schemas import _Body
from llmctl.serve.service import ApiError, Service

MAX_INPUTS = 2048  # OpenAI's own limit per request
FORMATS = ("float", "base64")


class EmbeddingRequest(_Body):
    input: Union[str, list[Any]]
    model: str | None = None
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None


def texts_of(body: EmbeddingRequest) -> list[str]:
    """The texts to embed; a 400 naming the first bad entry."""
    if body.encoding_format not in FORMATS:
        raise ApiError(400, f"encoding_format must be 'float' or 'base64' (got {body.encoding_format!r}).",
                       param="encoding_format")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise ApiError(400, "input must hold at least one text.", param="input")
    if len(texts) > MAX_INPUTS:
        raise ApiError(400, f"input holds {len(texts)} texts; at most {MAX_INPUTS} per request.", param="input")
    for k, text in enumerate(texts):
        param = "input" if isinstance(body.input, str) else f"input[{k}]"
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise ApiError(400, "Token arrays are not accepted: send the text, which the server tokenizes with "
                           "the model's own tokenizer.", param=param, code="token_input_unsupported")
        if not isinstance(text, str):
            raise ApiError(400, f"{param} must be a string (got {type(text).__name__}).", param=param)
        if not text.strip():
            raise ApiError(400, f"{param} is empty; give some text to embed.", param=param)
    return texts


def encoded(vector, encoding_format: str):
    import numpy as np

    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def add_embedding_route(app, service: Service) -> None:
    from llmctl.serve.prompts import check_model

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        check_model(service, body.model)
        if service.embedder is None:
            does = "generates text" if service.engine is not None else "is a task model (POST /v1/predict)"
            raise ApiError(404, f"The model '{service.name}' {does} and has no embeddings; serve an embedding run "
                           "or a sentence-transformers folder for /v1/embeddings.", param="model",
                           code="model_not_found")
        texts = texts_of(body)
        results = await service.embedder.predict([{"text": t} for t in texts])
        width = len(results[0]["embedding"])
        if body.dimensions is not None and body.dimensions != width:
            raise ApiError(400, f"dimensions {body.dimensions}: this model's vectors have {width} (they cannot be "
                           "shortened).", param="dimensions")
        tokens = sum(r["tokens"] for r in results)
        return {"object": "list", "model": service.name,
                "data": [{"object": "embedding", "index": i, "embedding": encoded(r["embedding"], body.encoding_format)}
                         for i, r in enumerate(results)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
