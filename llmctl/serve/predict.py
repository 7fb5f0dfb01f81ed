"""/v1/predict: task models (classification, NER, QA, multiple choice, fill-mask) answer rows as
`llmctl predict --input` does. One worker thread owns the model; requests that arrive while it
runs are merged into its next call, so concurrent clients share batches."""

from __future__ import annotations

import asyncio
import threading

from llmctl.errors import LlmctlError
from llmctl.serve.service import ApiError


class BatchedPredictor:
    def __init__(self, run, max_rows: int = 256):
        self.run, self.max_rows = run, max_rows  # run(rows, where) -> one dict per row
        self.pending: list = []  # (rows, future, loop)
        self.lock = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._work, name="llmctl-predict", daemon=True)
        self.thread.start()

    async def predict(self, rows: list[dict], top_k=None) -> list[dict]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            self.pending.append((rows, future, loop))
            self.lock.notify()
        return await future

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify()

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self.closing:
                    self.lock.wait()
                if self.closing and not self.pending:
                    return
                taken, count = [], 0
                while self.pending and (not taken or count + len(self.pending[0][0]) <= self.max_rows):
                    taken.append(self.pending.pop(0))
                    count += len(taken[-1][0])
            self._answer(taken)

    def _answer(self, taken: list) -> None:
        rows = [row for request_rows, _, _ in taken for row in request_rows]
        try:
            results = self.run(rows, "inputs")
        except LlmctlError as exc:
            if len(taken) > 1:  # one request's bad row must not fail the others: answer each alone
                for one in taken:
                    self._answer([one])
                return
            results, error = None, ApiError(400, str(exc).splitlines()[0], param="inputs", code="invalid_inputs")
        except Exception as exc:  # noqa: BLE001 - a failure answers the request, never kills the worker
            results, error = None, ApiError(500, f"Prediction failed: {type(exc).__name__}.", code="prediction_failed")
        start = 0
        for request_rows, future, loop in taken:
            if results is None:
                loop.call_soon_threadsafe(_settle, future, None, error)
                continue
            part = results[start:start + len(request_rows)]
            start += len(request_rows)
            loop.call_soon_threadsafe(_settle, future, part, None)


def _settle(future, value, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
