"""GPT-2 (no chat template) and T5 (encoder-decoder) served: concurrent greedy answers equal
`llmctl generate --precision fp32`, and chat on a model without a template is a 400."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import run_cli
from serve_helpers import Server

PROMPTS = ["The movie was", "Alice works as a teacher for Acme Corp in Paris and", "When did Bob",
           "In 1990, the City Council opened an office in Oslo with"]


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_concurrent_greedy_equals_generate(family, tiny_models, tmp_path):
    model = str(tiny_models[family])
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    expected = run_cli("generate", model, "--file", str(tmp_path / "p.txt"), "--precision", "fp32",
                       "--max-new-tokens", "10", "--json")
    assert expected.exit_code == 0, expected.stderr
    want = [row["completion"] for row in expected.json()["results"]]
    server = Server(model, "--precision", "fp32", "--max-batch", "3", tmp=tmp_path)
    try:
        client = server.client(key=None)

        def ask(prompt):
            return client.completions.create(model=model, prompt=prompt, max_tokens=10).choices[0].text

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(ask, PROMPTS * 2)) == want * 2
        chat = server.http(key=None).post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 400 and chat.json()["error"]["code"] == "no_chat_template"
    finally:
        server.stop()
