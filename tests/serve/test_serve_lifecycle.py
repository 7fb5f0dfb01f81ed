"""The engine stepped by the test (LLMCTL_FAULT=pause@1:decode waits before every decoding step
while the go-file is absent): a client that disconnects frees its slot at the next step, a full
queue answers 429 with Retry-After, and SIGTERM finishes the requests in flight, refuses new
ones with 503, and exits 0."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from serve_helpers import Server

pytestmark = pytest.mark.xdist_group("serve-lifecycle")


def stream_in_thread(server, model, max_tokens, results, key):
    def run():
        with server.http().stream("POST", "/v1/completions", json={"model": model, "prompt": "The movie was",
                                                                    "max_tokens": max_tokens, "stream": True}) as r:
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        results[key] = (r.status_code, events)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def finished(events) -> tuple[str, int]:
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    return chunks[-1]["choices"][0]["finish_reason"], len(chunks)


def test_disconnect_frees_the_slot_full_queue_is_429_and_sigterm_drains(tiny_models, tmp_path):
    go = tmp_path / "go"
    model = str(tiny_models["gpt2"])
    server = Server(model, "--precision", "fp32", "--max-batch", "1", "--max-queue", "1", "--max-tokens", "200",
                    tmp=tmp_path, env={"LLMCTL_FAULT": "pause@1:decode", "LLMCTL_FAULT_UNTIL": str(go)})
    try:
        # A client reads the first event of a long answer, then hangs up while the engine waits.
        with server.http().stream("POST", "/v1/completions", json={"model": model, "prompt": "Hugo",
                                                                    "max_tokens": 200, "stream": True}) as r:
            assert next(r.iter_lines()).startswith("data: ")
        server.wait_stderr("llmctl-fault: paused before decoding step 1")
        while server.metrics()["llmctl_disconnects_total"] < 1:
            time.sleep(0.05)
        results = {}
        second = stream_in_thread(server, model, 16, results, "second")
        while server.metrics()["llmctl_queue_length"] < 1:
            time.sleep(0.05)
        go.touch()  # the engine drops the departed row at its next step and serves the waiting one
        second.join()
        assert finished(results["second"][1])[0] == "length"
        # The departed answer stopped at its one prefilled token, not at 200.
        assert server.metrics()["llmctl_generated_tokens_total"] == 1 + 16

        go.unlink()  # the next step waits again: one request runs, one waits, the queue (1) is full
        threads = [stream_in_thread(server, model, 8, results, key) for key in ("third",)]
        server.wait_stderr("llmctl-fault: paused before decoding step", 2)
        threads.append(stream_in_thread(server, model, 8, results, "fourth"))
        while server.metrics()["llmctl_queue_length"] < 1:
            time.sleep(0.05)
        full = server.http().post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 4})
        assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
        assert full.json()["error"]["code"] == "queue_full"

        assert server.proc.poll() is None
        server.proc.send_signal(15)
        server.wait_stderr("SIGTERM: finishing the requests in flight")
        refused = server.http().post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 4})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "service_unavailable"
        assert server.http().get("/health").json()["status"] == "draining"
        go.touch()
        for thread in threads:
            thread.join()
        assert [finished(results[k][1]) for k in ("third", "fourth")] == [("length", 9), ("length", 9)]
        assert server.proc.wait(120) == 0
        assert "llmctl serve: stopped" in server.stderr() and "Traceback" not in server.stderr()
        with pytest.raises(httpx.ConnectError):
            server.http().get("/health")
    finally:
        go.touch()
        server.stop()


def test_a_burst_fills_the_free_slots_and_the_queue_before_429(tiny_models, tmp_path):
    """--max-batch 3 --max-queue 1, engine held before its first step with one request in the batch:
    the two free slots and the one queue place take three more, the fifth gets 429, and all four
    answer in full once the engine goes on."""
    go = tmp_path / "go"
    model = str(tiny_models["gpt2"])
    server = Server(model, "--precision", "fp32", "--max-batch", "3", "--max-queue", "1", tmp=tmp_path,
                    env={"LLMCTL_FAULT": "pause@1:decode", "LLMCTL_FAULT_UNTIL": str(go)})
    try:
        results = {}
        threads = [stream_in_thread(server, model, 6, results, "first")]
        server.wait_stderr("llmctl-fault: paused before decoding step 1")
        threads += [stream_in_thread(server, model, 6, results, key) for key in ("second", "third", "fourth")]
        while server.metrics()["llmctl_queue_length"] < 3:
            assert not results, results  # none may be refused (nor answer while the engine is held)
            time.sleep(0.05)
        full = server.http().post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 4})
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        go.touch()
        for thread in threads:
            thread.join()
        assert {key: (status, finished(events)) for key, (status, events) in results.items()} == {
            key: (200, ("length", 7)) for key in ("first", "second", "third", "fourth")}
        assert server.terminate() == 0
    finally:
        go.touch()
        server.stop()
