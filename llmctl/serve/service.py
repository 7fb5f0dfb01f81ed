"""What the routes share: the service's state and OpenAI-shaped errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from llmctl.serve.metrics import Metrics

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


@dataclass
class Service:
    name: str  # the model id clients send and /v1/models lists
    kind: str  # "causal" | "seq2seq" | "predict"
    gen: object = None  # llmctl.generation.model.Generator
    engine: object = None  # llmctl.serve.engine.Engine
    predictor: object = None  # llmctl.serve.predict.BatchedPredictor over a task model's predict
    embedder: object = None  # llmctl.serve.predict.BatchedPredictor over an embedding model
    context: int | None = None
    max_tokens: int = 512  # the server's cap on max_tokens
    api_key: str | None = None
    max_body: int = 1 << 20
    on_access: object = None  # callable(dict), one call per request
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    in_flight: int = 0
    created: int = field(default_factory=lambda: int(time.time()))
