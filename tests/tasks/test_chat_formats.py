"""Chat data in the shapes people have (issue 27 item 17): ShareGPT (`conversations` of
from/value) and Alpaca (instruction / input / output) are converted on read for chat training
and eval, scoring exactly as the same conversations in a messages column; `data.chat_template`
given as a template or a .jinja file gives a base model without one a chat template, saved with
the trained model."""

import json

import pytest
import yaml

from helpers import ONE_THREAD, run_cli
from llmctl.errors import EXIT_USAGE

QA = [("what is the capital of france ?", "paris"), ("what colour is the sky ?", "blue"),
      ("how many legs has a cat ?", "four")]
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def conversations(n):
    return [[{"role": "system", "content": "be brief"}, {"role": "user", "content": QA[i % 3][0]},
             {"role": "assistant", "content": QA[i % 3][1]}] for i in range(n)]


def as_sharegpt(convs):
    return [{"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in c]} for c in convs]


def recipe(path, model, train, data=None):
    body = {"task": "causal-lm", "model": {"name_or_path": str(model)},
            "data": {"train": str(train), "validation": None, "max_length": 64} | (data or {}),
            "train": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-2, "precision": "fp32"}}
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sharegpt_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharegpt")
    train = write_jsonl(tmp / "train.jsonl", as_sharegpt(conversations(12)))
    path = recipe(tmp / "r.yaml", tiny_models["llama"], train)
    result = run_cli("finetune", str(path), "--output-dir", str(tmp / "run"), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert result.json()["data"]["train_rows"] == 12
    return tmp, path


def _loss(run, data):
    result = run_cli("eval", str(run), "--data", str(data), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return result.json()["metrics"]["loss"]


def test_sharegpt_trains_and_scores_as_messages(sharegpt_run):
    tmp, path = sharegpt_run
    convs = conversations(3)
    messages = write_jsonl(tmp / "messages.jsonl", [{"messages": c} for c in convs])
    sharegpt = write_jsonl(tmp / "sharegpt.jsonl", as_sharegpt(convs))
    assert _loss(tmp / "run", sharegpt) == _loss(tmp / "run", messages)
    doctor = run_cli("doctor", str(path))
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    assert "text_column" not in doctor.stdout + doctor.stderr


def test_alpaca_scores_as_its_user_and_assistant_turns(sharegpt_run):
    tmp, _ = sharegpt_run
    rows = [{"instruction": "name the capital", "input": "france", "output": "paris"},
            {"instruction": "what colour is the sky ?", "input": "", "output": "blue"}]
    alpaca = write_jsonl(tmp / "alpaca.jsonl", rows)
    messages = write_jsonl(tmp / "alpaca-messages.jsonl", [
        {"messages": [{"role": "user", "content": "name the capital\n\nfrance"}, {"role": "assistant", "content": "paris"}]},
        {"messages": [{"role": "user", "content": "what colour is the sky ?"}, {"role": "assistant", "content": "blue"}]}])
    assert _loss(tmp / "run", alpaca) == _loss(tmp / "run", messages)


def test_unknown_sharegpt_speaker_is_named(sharegpt_run):
    tmp, _ = sharegpt_run
    bad = write_jsonl(tmp / "bad.jsonl", [{"conversations": [{"from": "robot", "value": "hi"},
                                                             {"from": "gpt", "value": "hello"}]}])
    result = run_cli("eval", str(tmp / "run"), "--data", str(bad))
    assert result.exit_code == 3, result.stderr
    assert "message 1 has the unknown role 'robot'" in result.stderr


def test_chat_template_file_for_a_base_model(tiny_models, tmp_path):
    """Tiny GPT-2 has no chat template: data.chat_template names a .jinja file; the run trains on
    the messages, its recipe keeps the template text, and its saved tokenizer renders with it."""
    from transformers import AutoTokenizer

    template = tmp_path / "chatml.jinja"
    template.write_text(TEMPLATE)
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": c} for c in conversations(8)])
    path = recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, {"chat_template": str(template)})
    result = run_cli("finetune", str(path), "--output-dir", str(tmp_path / "run"), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert saved["data"]["chat_template"] == TEMPLATE
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert tokenizer.chat_template == TEMPLATE

    # predict on the run: plain prompts go through its template (said so), --max-new-tokens caps them
    ask = tmp_path / "ask.jsonl"
    ask.write_text('{"prompt": "what colour is the sky ?"}\n')
    predicted = run_cli("predict", str(tmp_path / "run"), "--input", str(ask), "--max-new-tokens", "2", "--json",
                        env=ONE_THREAD)
    assert predicted.exit_code == 0, predicted.stderr
    assert "1 plain prompt(s) sent as user turns of the chat template (the run trained with data.chat_template)" \
        in predicted.stderr
    row = predicted.json()["predictions"][0]
    assert row["prompt"] == "what colour is the sky ?"
    assert len(tokenizer(row["completion"], add_special_tokens=False)["input_ids"]) <= 2

    without = recipe(tmp_path / "plain.yaml", tiny_models["gpt2"], train)
    refused = run_cli("finetune", str(without), "--dry-run")
    assert refused.exit_code != 0 and "has no chat template" in refused.stderr


def test_chat_template_neither_text_nor_file(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": c} for c in conversations(2)])
    path = recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, {"chat_template": "missing.jinja"})
    result = run_cli("finetune", str(path), "--dry-run")
    assert result.exit_code == EXIT_USAGE
    assert "r.yaml:9: data.chat_template: 'missing.jinja' is neither a Jinja chat template" in result.stderr
