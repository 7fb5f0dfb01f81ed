"""/v1/predict: a classification run answers the rows `llmctl predict --input` takes with what it
writes, also when clients send at once (their rows share batches); bad rows are a 400."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import run_cli, sentiment_rows, write_csv, write_recipe
from serve_helpers import Server

ROWS = [{"sentence": s} for s in ("a great and moving film", "truly awful acting", "i loved the story",
                                  "a dull and boring film", "beautiful and clever")]


def test_a_task_run_answers_predict_like_llmctl_predict(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16, string_labels=True))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run",
                          train={"max_steps": 2})
    trained = run_cli("finetune", str(recipe))
    assert trained.exit_code == 0, trained.stderr
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    expected = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "in.jsonl"), "--json")
    assert expected.exit_code == 0, expected.stderr
    want = [{k: v for k, v in p.items() if k != "line"} for p in expected.json()["predictions"]]

    server = Server(tmp_path / "run", "--json", tmp=tmp_path)
    try:
        assert json.loads(server.lines[0])["kind"] == "predict"
        http = server.http(key=None)
        got = http.post("/v1/predict", json={"inputs": ROWS})
        assert got.status_code == 200, got.text
        answer = got.json()["data"]
        assert [a["label"] for a in answer] == [w["label"] for w in want]
        assert [a["score"] for a in answer] == pytest.approx([w["score"] for w in want], abs=1e-5)
        with ThreadPoolExecutor(5) as pool:  # one row each, at once: batched together, answered apart
            alone = list(pool.map(lambda r: http.post("/v1/predict", json={"inputs": [r]}).json()["data"][0], ROWS))
        assert [a["sentence"] for a in alone] == [r["sentence"] for r in ROWS]
        assert [a["label"] for a in alone] == [w["label"] for w in want]
        bad = http.post("/v1/predict", json={"inputs": [{"review": "no sentence column"}]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "inputs", bad.text
        chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and chat.json()["error"]["code"] == "wrong_endpoint"
        assert http.post("/v1/predict", json={"inputs": ROWS[:1]}).status_code == 200  # still serving
        assert server.terminate() == 0
        logs = [json.loads(line) for line in server.lines[1:]]
        assert [(r["event"], r["path"]) for r in logs][:2] == [("request", "/v1/predict")] * 2
        assert [r["status"] for r in logs if r["path"] == "/v1/predict"] == [200] * 6 + [400, 200]
    finally:
        server.stop()
