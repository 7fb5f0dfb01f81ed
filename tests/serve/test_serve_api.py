"""`llmctl serve` answering the real `openai` client: chat and completions, streamed and not,
greedy answers under concurrency equal to one by one and to `llmctl generate`, every refusal
an OpenAI-shaped error with its status, the API key, /metrics counting what was sent, and a
mixed load of good and bad requests from many clients."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import time

import pytest
from helpers import run_cli
from serve_helpers import KEY, Server

pytestmark = pytest.mark.xdist_group("serve-api")  # the tests share one server and read its counters in turn

PROMPTS = ["The movie was", "Alice works as a teacher for Acme Corp in Paris and", "When did Bob",
           "I really loved this film, but the", "In 1990, the City Council opened an office in Oslo with", "Hugo"]
CHATS = [[{"role": "user", "content": "hello there"}],
         [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Who is Alice?"},
          {"role": "assistant", "content": "A teacher."}, {"role": "user", "content": "Where does she work?"}]]
N = 12


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    srv = Server(tiny_models["llama"], "--precision", "fp32", "--max-tokens", "24", "--max-body", "4096",
                 "--max-batch", "4", tmp=tmp_path_factory.mktemp("serve"), env={"LLMCTL_API_KEY": KEY})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model_name(tiny_models):
    return str(tiny_models["llama"])


@pytest.fixture(scope="module")
def generated(tiny_models, tmp_path_factory):
    """What `llmctl generate --precision fp32` answers for PROMPTS and CHATS."""
    tmp = tmp_path_factory.mktemp("generate")
    (tmp / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    (tmp / "chats.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in CHATS))
    out = {}
    for name, extra in (("prompts.txt", []), ("chats.jsonl", ["--chat"])):
        result = run_cli("generate", str(tiny_models["llama"]), "--file", str(tmp / name), "--precision", "fp32",
                         "--max-new-tokens", str(N), "--json", *extra)
        assert result.exit_code == 0, result.stderr
        out[name] = [row["completion"] for row in result.json()["results"]]
    return out


def complete(client, model, prompt, **kwargs):
    return client.completions.create(model=model, prompt=prompt, max_tokens=N, temperature=0, **kwargs)


def test_concurrent_greedy_answers_equal_one_by_one_and_llmctl_generate(server, model_name, generated):
    client = server.client()
    alone = [complete(client, model_name, p).choices[0].text for p in PROMPTS]
    assert alone == generated["prompts.txt"]
    with ThreadPoolExecutor(len(PROMPTS) * 2) as pool:  # more clients than --max-batch 4: requests queue, join, leave
        together = list(pool.map(lambda p: complete(client, model_name, p).choices[0].text, PROMPTS * 2))
        chats = list(pool.map(lambda m: client.chat.completions.create(model=model_name, messages=m, max_tokens=N),
                              CHATS * 3))
    assert together == alone * 2
    assert [c.choices[0].message.content for c in chats] == generated["chats.jsonl"] * 3


def test_chat_streamed_and_not_give_the_same_answer_usage_and_finish_reason(server, model_name):
    client = server.client()
    whole = client.chat.completions.create(model=model_name, messages=CHATS[1], max_tokens=N)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason == "length" and whole.usage.completion_tokens == N
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + N
    chunks = list(client.chat.completions.create(model=model_name, messages=CHATS[1], max_tokens=N, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == N
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_the_raw_stream_is_server_sent_events_ending_with_done(server, model_name):
    with server.http().stream("POST", "/v1/completions", json={"model": model_name, "prompt": "Hugo", "max_tokens": 3,
                                                                "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "text_completion"


def test_completions_stop_n_seed_logprobs_and_models(server, model_name):
    client = server.client()
    plain = complete(client, model_name, PROMPTS[0]).choices[0].text
    stop = plain.strip().split()[1]
    cut = complete(client, model_name, PROMPTS[0], stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.text == plain[:plain.index(stop)]
    streamed = "".join(c.choices[0].text for c in complete(client, model_name, PROMPTS[0], stop=stop, stream=True))
    assert streamed == cut.text
    many = client.completions.create(model=model_name, prompt=[PROMPTS[1], PROMPTS[2]], max_tokens=N, n=2,
                                     temperature=0.9, seed=7)
    again = client.completions.create(model=model_name, prompt=[PROMPTS[1], PROMPTS[2]], max_tokens=N, n=2,
                                      temperature=0.9, seed=7)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert [c.text for c in many.choices] == [c.text for c in again.choices]  # a seed makes sampling repeatable
    scored = complete(client, model_name, PROMPTS[3], logprobs=2).choices[0].logprobs
    assert len(scored.tokens) == N and all(lp <= 0 for lp in scored.token_logprobs)
    assert all(len(top) == 2 for top in scored.top_logprobs)
    chat = client.chat.completions.create(model=model_name, messages=CHATS[0], max_tokens=3, logprobs=True,
                                          top_logprobs=1)
    assert len(chat.choices[0].logprobs.content) == 3
    assert [m.id for m in client.models.list().data] == [model_name]


def error(response) -> tuple[int, dict]:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    assert "Traceback" not in response.text
    return response.status_code, body["error"]


def test_every_refusal_is_an_openai_error_with_its_status(server, model_name):
    http = server.http()
    chat = {"model": model_name, "messages": CHATS[0]}
    cases = [
        (http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}), 400),
        (http.post("/v1/chat/completions", json=chat | {"model": "gpt-4"}), 404),
        (http.post("/v1/chat/completions", json=chat | {"max_tokens": 25}), 400),
        (http.post("/v1/chat/completions", json=chat | {"max_tokens": -1}), 400),
        (http.post("/v1/chat/completions", json=chat | {"messages": []}), 400),
        (http.post("/v1/chat/completions", json=chat | {"messages": [{"role": "wizard", "content": "hi"}]}), 400),
        (http.post("/v1/chat/completions", json=chat | {"temperature": "hot"}), 422),
        (http.post("/v1/completions", json={"model": model_name, "prompt": "word " * 250}), 400),
        (http.post("/v1/completions", json={"model": model_name, "prompt": "x" * 5000}), 413),
        (http.get("/v1/nothing"), 404),
        (server.http(key=None).get("/v1/models"), 401),
        (server.http(key="wrong").get("/v1/models"), 401),
        (http.post("/v1/embeddings", json={"model": model_name, "input": "hello"}), 404),
    ]
    found = [error(response) for response, _ in cases]
    assert [status for status, _ in found] == [status for _, status in cases]
    messages = [e["message"] for _, e in found]
    assert "The model 'gpt-4' does not exist" in messages[1]
    assert messages[2] == "max_tokens 25 is above this server's limit of 24 (llmctl serve --max-tokens)."
    assert found[5][1]["param"] == "messages[0].role" and found[7][1]["code"] == "context_length_exceeded"
    assert found[11][1]["message"] == "Incorrect API key provided." and found[11][1]["type"] == "authentication_error"
    assert found[12][1]["message"].startswith(f"The model '{model_name}' generates text and has no embeddings")
    assert server.http(key=None).get("/health").json()["status"] == "ready"  # probes need no key
    assert server.client().chat.completions.create(model=model_name, messages=CHATS[0], max_tokens=2).choices


def test_a_chunked_body_over_the_limit_is_413_and_one_under_it_is_answered(server, model_name):
    """No Content-Length (httpx streams a generator body with Transfer-Encoding: chunked)."""
    http = server.http()

    def body(text):
        data = json.dumps({"model": model_name, "prompt": text, "max_tokens": 2}).encode()
        for start in range(0, len(data), 1000):
            yield data[start:start + 1000]

    big = http.post("/v1/completions", content=body("x" * 5000), headers={"content-type": "application/json"})
    status, err = error(big)
    assert (status, err["code"]) == (413, "request_too_large"), big.text
    assert err["message"] == "The request body has more than 4096 bytes; this server takes at most 4096."
    small = http.post("/v1/completions", content=body(PROMPTS[0]), headers={"content-type": "application/json"})
    assert small.status_code == 200 and small.json()["usage"]["completion_tokens"] == 2, small.text


def test_metrics_count_the_requests_sent(server, model_name):
    before = server.metrics()
    client = server.client()
    for _ in range(3):
        complete(client, model_name, PROMPTS[0])
    server.http().post("/v1/completions", json={"model": "other", "prompt": "x"})
    after = server.metrics()

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    assert delta('llmctl_requests_total{path="/v1/completions",status="200"}') == 3
    assert delta('llmctl_requests_total{path="/v1/completions",status="404"}') == 1
    assert delta('llmctl_requests_total{path="/metrics",status="200"}') == 1  # the first /metrics call itself
    assert delta("llmctl_generated_tokens_total") == 3 * N
    assert delta("llmctl_prefill_size_sum") == 3 and delta("llmctl_prefill_size_count") == 3  # one at a time
    assert delta('llmctl_request_duration_seconds_count{path="/v1/completions"}') == 4
    assert after["llmctl_queue_length"] == 0 and after["llmctl_running_sequences"] == 0
    assert after["llmctl_batched_forward"] == 1  # Llama: one forward pass per step for the whole batch


def test_a_mixed_load_of_good_and_bad_requests_from_many_clients(server, model_name, generated):
    """Bounded and loopback only: 48 requests from 16 clients, one in three bad."""
    http = server.http()
    bad = [({"model": model_name, "messages": []}, 400), ({"model": "nope", "prompt": "x"}, 404),
           ({"model": model_name, "prompt": "x", "max_tokens": 99}, 400)]

    def send(k):
        if k % 3 == 2:
            body, status = bad[k % len(bad)]
            path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
            response = http.post(path, json=body)
            return response.status_code == status and "error" in response.json()
        prompt = PROMPTS[k % len(PROMPTS)]
        body = {"model": model_name, "prompt": prompt, "max_tokens": N, "stream": k % 2 == 0}
        if body["stream"]:
            with http.stream("POST", "/v1/completions", json=body) as response:
                events = [json.loads(line[6:]) for line in response.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            text = "".join(e["choices"][0]["text"] for e in events)
        else:
            text = http.post("/v1/completions", json=body).json()["choices"][0]["text"]
        return text == generated["prompts.txt"][PROMPTS.index(prompt)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(48)))
    assert all(results), results
    assert server.http(key=None).get("/health").json()["status"] == "ready"


def test_one_access_log_line_per_request(server):
    # A line is written once its response has gone, so the client can be back before its line, and the
    # previous tests' last lines can still be arriving: wait for the log to go quiet, then for each line.
    def settle():
        seen, quiet = len(server.lines), 0
        while quiet < 10:
            time.sleep(0.05)
            quiet = quiet + 1 if len(server.lines) == seen else 0
            seen = len(server.lines)
        return seen

    before = settle()
    server.http().get("/v1/models")
    after_get = settle()
    server.http().post("/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})
    after_post = settle()
    assert (after_get - before, after_post - after_get) == (1, 1)
    assert server.lines[before].split()[2:5] == ["GET", "/v1/models", "200"]
    assert server.lines[after_get].split()[2:5] == ["POST", "/v1/chat/completions", "404"]
    lines = [line for line in server.lines[1:] if " /v1/" in line or " /health " in line or " /metrics " in line]
    assert len(lines) == len(server.lines) - 1


def test_a_taken_port_or_a_bad_option_is_one_line_and_exit_2_before_the_model_loads(server, model_name):
    port = server.url.rsplit(":", 1)[1]
    taken = run_cli("serve", model_name, "--port", port)
    assert taken.exit_code == 2 and taken.stdout == ""
    assert taken.stderr.splitlines()[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    bad = run_cli("serve", "no/such-model", "--max-batch", "0", "--precision", "fp64")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == ("error: --max-batch must be at least 1; --precision 'fp64' is not one of "
                                  "auto, fp32, bf16, fp16.")
