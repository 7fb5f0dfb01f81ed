"""The routes: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, llmctl's
/v1/predict for task models, and /health, /metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from llmctl.serve.service import ApiError, Service
from llmctl.serve.prompts import chat_ids, check_model, fit, sampling, text_ids
from llmctl.serve.schemas import ChatRequest, CompletionRequest, PredictRequest

POLL_S = 0.25  # how often a waiting non-streamed request checks that its client is still there


def add_routes(app, service: Service) -> None:
    @app.get("/health")
    async def health():
        state = "draining" if service.draining else "ready"
        return JSONResponse({"status": state, "model": service.name}, status_code=503 if service.draining else 200)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": service.name, "object": "model", "created": service.created,
                                            "owned_by": "llmctl"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_model(service, body.model)
        asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        top = (body.top_logprobs or 0) if body.logprobs else None
        settings = sampling(service, body, asked, top)
        ids = chat_ids(service, body.messages)
        jobs = [(ids, fit(service, ids, settings, asked, "messages"))]
        return await answer(service, request, body, jobs, chat=True, streaming=StreamingResponse)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(service, body.model)
        settings = sampling(service, body, body.max_tokens, body.logprobs)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise ApiError(400, "prompt must hold at least one text.", param="prompt")
        jobs = []
        for k, prompt in enumerate(prompts):
            param = "prompt" if isinstance(body.prompt, str) else f"prompt[{k}]"
            ids = text_ids(service, prompt, param)
            jobs.append((ids, fit(service, ids, settings, body.max_tokens, param)))
        return await answer(service, request, body, jobs, chat=False, streaming=StreamingResponse)

    @app.post("/v1/predict")
    async def predict(body: PredictRequest):
        check_model(service, body.model)
        if service.predictor is None:
            use = ("/v1/embeddings" if service.embedder is not None else "/v1/chat/completions or /v1/completions")
            does = "embeds text" if service.embedder is not None else "generates text"
            raise ApiError(400, f"'{service.name}' {does}; use {use}.", code="wrong_endpoint")
        if not body.inputs:
            raise ApiError(400, "inputs must hold at least one row.", param="inputs")
        rows = [row if isinstance(row, dict) else {"text": row} for row in body.inputs]
        results = await service.predictor.predict(rows, body.top_k)
        return {"object": "list", "model": service.name, "data": results}

    from llmctl.serve.embeddings import add_embedding_route

    add_embedding_route(app, service)


async def answer(service: Service, request, body, jobs: list[tuple], chat: bool, streaming):
    """Queue one sequence per prompt and choice, then stream their events or gather them."""
    from llmctl.serve.engine import QueueFull

    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    seeded = []
    for ids, settings in jobs:
        for j in range(body.n):
            if settings.seed is not None and j:
                import dataclasses

                settings = dataclasses.replace(settings, seed=settings.seed + 1)
            seeded.append((ids, settings))

    def sink(index):
        return lambda event: loop.call_soon_threadsafe(events.put_nowait, (index, event))

    try:
        seqs = service.engine.submit([(ids, s, sink(i)) for i, (ids, s) in enumerate(seeded)])
    except QueueFull:
        raise ApiError(429, f"The queue is full ({service.engine.max_queue} waiting); retry later.",
                       code="queue_full", headers={"Retry-After": str(service.engine.retry_after())}) from None
    service.metrics.add_prompt_tokens(sum(len(ids) for ids, _ in seeded))
    shape = Shape(service.name, chat, service.gen.tokenizer)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return streaming(stream(shape, seqs, events, usage, service.metrics), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache"})
    return await gather(shape, request, seqs, events, service.metrics)


def cancel(seqs) -> None:
    for seq in seqs:
        seq.cancelled = True


async def gather(shape, request, seqs, events, metrics):
    texts, logprobs, ends, usage = [""] * len(seqs), [[] for _ in seqs], [None] * len(seqs), [None] * len(seqs)
    try:
        while None in ends:
            try:
                index, event = await asyncio.wait_for(events.get(), POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    metrics.disconnected()
                    return None
                continue
            if event["type"] == "delta":
                texts[index] += event["text"]
                if event["logprob"] is not None:
                    logprobs[index].append(event["logprob"])
            elif event["type"] == "error":
                raise ApiError(500, f"Generation failed: {event['message']}", code="generation_failed")
            else:
                ends[index], usage[index] = event["finish_reason"], event["usage"]
    finally:
        cancel([s for s, end in zip(seqs, ends) if end is None])
    choices = [shape.choice(i, texts[i], ends[i], logprobs[i] if seqs[i].sampling.logprobs is not None else None)
               for i in range(len(seqs))]
    return shape.whole(choices, total_usage(seqs, usage))


def total_usage(seqs, usage) -> dict:
    prompts = {id(s.prompt): len(s.prompt) for s in seqs}  # n choices of one prompt count it once
    completion = sum(u["completion_tokens"] for u in usage if u)
    prompt = sum(prompts.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def stream(shape, seqs, events, include_usage: bool, metrics):
    ends, usage = [None] * len(seqs), [None] * len(seqs)
    try:
        if shape.chat:
            for i in range(len(seqs)):
                yield sse(shape.chunk(i, {"role": "assistant", "content": ""}, None, None))
        while None in ends:
            index, event = await events.get()
            if event["type"] == "delta":
                info = event["logprob"]
                lp = shape.logprobs([info]) if info is not None and seqs[index].sampling.logprobs is not None else None
                yield sse(shape.chunk(index, event["text"], None, lp))
            elif event["type"] == "error":
                yield sse({"error": {"message": f"Generation failed: {event['message']}", "type": "server_error",
                                     "param": None, "code": "generation_failed"}})
                ends = ["error"] * len(seqs)
                return
            else:
                ends[index], usage[index] = event["finish_reason"], event["usage"]
                yield sse(shape.chunk(index, {} if shape.chat else "", event["finish_reason"], None))
        if include_usage:
            yield sse(shape.whole([], total_usage(seqs, usage), chunk=True))
        yield "data: [DONE]\n\n"
    finally:  # the client went away (the task is cancelled) or the answer is complete
        if None in ends:
            metrics.disconnected()
        cancel([s for s, end in zip(seqs, ends) if end is None])


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class Shape:
    """OpenAI's response objects for chat (chat.completion[.chunk]) or text (text_completion)."""

    def __init__(self, model: str, chat: bool, tokenizer):
        self.model, self.chat, self.tokenizer = model, chat, tokenizer
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def whole(self, choices: list, usage: dict, chunk: bool = False) -> dict:
        kind = ("chat.completion" + (".chunk" if chunk else "")) if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, "usage": usage}

    def choice(self, index: int, text: str, finish: str, infos) -> dict:
        lp = self.logprobs(infos) if infos is not None else None
        if self.chat:
            return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": lp,
                    "finish_reason": finish}
        return {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}

    def chunk(self, index: int, delta, finish, lp) -> dict:
        body = ({"index": index, "delta": delta if isinstance(delta, dict) else {"content": delta}, "logprobs": lp,
                 "finish_reason": finish} if self.chat else
                {"index": index, "text": delta, "logprobs": lp, "finish_reason": finish})
        return {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "system_fingerprint": None, "choices": [body]}

    def _token(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def logprobs(self, infos: list[dict]) -> dict:
        if self.chat:
            return {"content": [{"token": self._token(i["token"]), "logprob": i["logprob"],
                                 "bytes": list(self._token(i["token"]).encode()),
                                 "top_logprobs": [{"token": self._token(t), "logprob": lp,
                                                   "bytes": list(self._token(t).encode())} for t, lp in i["top"]]}
                                for i in infos]}
        return {"tokens": [self._token(i["token"]) for i in infos], "token_logprobs": [i["logprob"] for i in infos],
                "top_logprobs": [{self._token(t): lp for t, lp in i["top"]} for i in infos], "text_offset": None}
