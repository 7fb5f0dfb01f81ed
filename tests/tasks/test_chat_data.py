"""Chat / instruction data for task: causal-lm on the tiny Llama (SmolLM2-like) and Qwen2 fixtures:
the assistant-only label mask checked token by token against the rendered chat template, prompt /
completion pairs through the template, packed blocks whose examples never see each other (logits
equal to each example run alone), streamed chat files, and the CLI: finetune (loss falls, features
cached), eval, predict, and every bad input's one-line error and exit code."""

import json

import numpy as np
import pytest
import torch
import yaml

from helpers import error_lines, run_cli, smollm2_gguf, write_jsonl
from llmctl.errors import EXIT_DATA, EXIT_USAGE

CHAT_MODELS = ["llama", "qwen2"]
END = "<|im_end|>"


def turn(role, content):
    return {"role": role, "content": content}


# What the assistant says in each conversation, turn by turn.
CONVERSATIONS = [
    [turn("system", "Answer briefly."), turn("user", "Is this review positive? a great film"),
     turn("assistant", "positive")],
    [turn("user", "hello there"), turn("assistant", "hi , how can i help ?"), turn("user", "tell me a story"),
     turn("assistant", " once upon a time\nthe end ")],
    [turn("user", "one"), turn("assistant", "two"), turn("user", "three"), turn("assistant", "four"),
     turn("user", "five"), turn("assistant", "six")],
]


@pytest.fixture(scope="module")
def tokenizers(tiny_models):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    return {name: load_tokenizer(ModelConfig(name_or_path=str(tiny_models[name]))) for name in CHAT_MODELS + ["gpt2"]}


def featurize(path, tokenizer, **data):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    task = CausalLMTask(CausalLMData(train=str(path), validation=None, **data))
    return task, task.featurize(task.load_split("train", str(path)), tokenizer)


def learned_spans(ids, labels) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of positions whose label is not -100."""
    spans, start = [], None
    for i, (token, label) in enumerate(zip(ids, labels)):
        if label != -100:
            assert label == token  # a learned position learns its own token (the model shifts)
            start = i if start is None else start
        elif start is not None:
            spans.append((start, i))
            start = None
    return spans + ([(start, len(labels))] if start is not None else [])


def learned_runs(ids, labels) -> list[list[int]]:
    """The token ids of each run of learned positions."""
    return [list(ids[a:b]) for a, b in learned_spans(ids, labels)]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_only_assistant_content_and_end_marker_are_learned(model, tokenizers, tmp_path):
    """Token by token: the input is exactly the chat template's rendering (the template's own
    tokenization), each assistant turn is one learned run that decodes to its content plus
    <|im_end|>, and nothing else (system, user, role headers, generation prompt, the newline
    after <|im_end|>) is learned."""
    tok = tokenizers[model]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CONVERSATIONS])
    _, features = featurize(path, tok, max_length=512)
    assert set(features.columns) == {"input_ids", "labels"}
    for messages, ids, labels in zip(CONVERSATIONS, features.columns["input_ids"], features.columns["labels"]):
        assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        expected = [m["content"] + END for m in messages if m["role"] == "assistant"]
        assert [tok.decode(run) for run in learned_runs(ids, labels)] == expected
        unlearned = tok.decode([t for t, label in zip(ids, labels) if label == -100])
        for message in messages:
            if message["role"] != "assistant":
                assert message["content"] in unlearned
        assert unlearned.count("<|im_start|>assistant\n") == len(expected)  # the generation prompts


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_prompt_completion_pairs_through_the_chat_template(model, tokenizers, tmp_path):
    tok = tokenizers[model]
    rows = [{"prompt": "Is this review positive? a dull film", "completion": "negative"},
            {"prompt": "", "completion": "an answer to nothing"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    _, features = featurize(path, tok, prompt_column="prompt", completion_column="completion", chat_template=True)
    for row, ids, labels in zip(rows, features.columns["input_ids"], features.columns["labels"]):
        messages = [turn("user", row["prompt"]), turn("assistant", row["completion"])]
        assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert [tok.decode(run) for run in learned_runs(ids, labels)] == [row["completion"] + END]


def test_a_messages_column_wins_over_text_and_parquet_works(tokenizers, tmp_path):
    import pandas as pd

    tok = tokenizers["llama"]
    rows = [{"text": "plain text that is not learned", "messages": c} for c in CONVERSATIONS]
    pd.DataFrame(rows).to_parquet(tmp_path / "chat.parquet")
    _, features = featurize(tmp_path / "chat.parquet", tok)
    runs = [tok.decode(run) for ids, labels in zip(features.columns["input_ids"], features.columns["labels"])
            for run in learned_runs(ids, labels)]
    assert runs == [m["content"] + END for c in CONVERSATIONS for m in c if m["role"] == "assistant"]


def repeated_conversations(n: int) -> list[dict]:
    return [{"messages": CONVERSATIONS[i % len(CONVERSATIONS)]} for i in range(n)]


@pytest.mark.parametrize("packing", [True, False])
def test_a_streamed_chat_file_gives_the_whole_read_features(packing, tokenizers, tmp_path, monkeypatch):
    from llmctl.tasks import causal_lm_file
    from llmctl.tasks.causal_lm_file import LMFileSplit

    path = write_jsonl(tmp_path / "chat.jsonl", repeated_conversations(23))
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 5)
    task, streamed = featurize(path, tokenizers["qwen2"], packing=packing, max_length=40)
    assert isinstance(task.load_split("train", str(path)), LMFileSplit)
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 10_000)
    _, whole = featurize(path, tokenizers["qwen2"], packing=packing, max_length=40)
    assert set(streamed.columns) == set(whole.columns)
    for name, column in streamed.columns.items():
        assert [r.tolist() for r in column] == whole.columns[name], name
    assert list(streamed.lengths) == whole.lengths


# -- packing keeps examples apart -------------------------------------------------------
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_packed_logits_equal_each_example_run_alone(model, attention, tiny_models, tokenizers, tmp_path):
    """Every stretch of a packed block between two example starts (a whole example, or the rest
    of one the block before cut) gives the logits it gives run alone, in a padded batch of
    blocks; and the label of each example's first token is not learned across the boundary."""
    from transformers import AutoModelForCausalLM

    words = "the a film movie was great dull and not very truly awful good plot acting story".split()
    rng = np.random.default_rng(0)
    rows = [{"text": " ".join(rng.choice(words, size=int(rng.integers(1, 12))))} for _ in range(9)]
    path = write_jsonl(tmp_path / "text.jsonl", rows)
    tok = tokenizers[model]
    task, features = featurize(path, tok, packing=True, max_length=24)
    assert len(features) >= 3 and features.lengths[-1] < 24  # the short last block is padded in the batch
    batch = task.collate(features.rows(range(len(features))), tok)
    assert batch["attention_mask"].shape == (len(features), 1, 24, 24)
    lm = AutoModelForCausalLM.from_pretrained(tiny_models[model], attn_implementation=attention).eval()
    with torch.no_grad():
        packed = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"]).logits
        compared = 0
        for b, starts in enumerate(features.columns["example_starts"]):
            edges = [0, *starts, int(features.lengths[b])]
            for start, end in zip(edges, edges[1:]):
                piece = batch["input_ids"][b : b + 1, start:end]
                alone = lm(input_ids=piece).logits[0]
                torch.testing.assert_close(packed[b, start:end], alone, rtol=1e-4, atol=1e-5)
                compared += 1
                if start:
                    assert batch["labels"][b, start] == -100
    assert compared > len(features)  # several examples share a block


# -- the CLI -----------------------------------------------------------------------------
QA = [("what is the capital of france ?", "paris"), ("what colour is the sky ?", "blue"),
      ("how many legs has a cat ?", "four")]


def qa_rows(n):
    return [{"messages": [turn("user", QA[i % 3][0]), turn("assistant", QA[i % 3][1])]} for i in range(n)]


def chat_recipe(path, model, train, valid, data=None, train_cfg=None):
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(model)},
              "data": {"train": str(train), "validation": str(valid) if valid else None, "max_length": 64,
                       "max_new_tokens": 4} | (data or {}),
              "train": {"max_steps": 40, "batch_size": 4, "eval_batch_size": 8, "learning_rate": 1e-2,
                        "warmup_ratio": 0.0, "precision": "fp32", "eval_every": 20, "save_every": 40,
                        "logging_steps": 5} | (train_cfg or {})}
    if valid is None:
        del recipe["train"]["eval_every"]
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_cli_finetune_eval_predict_on_chat_data(tiny_models, tokenizers, tmp_path):
    """A tiny repetitive chat set, packed: the loss falls, the second run takes its features from
    the cache (whose labels are the assistant answers only), eval scores the chat validation
    file with the same mask, and predict answers a conversation that ends with a user turn."""
    from llmctl.data import store

    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(48))
    valid = write_jsonl(tmp_path / "valid.jsonl", qa_rows(3))
    recipe = chat_recipe(tmp_path / "chat.yaml", tiny_models["llama"], train, valid, data={"packing": True})
    env = {"LLMCTL_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    first = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"), "--json", env=env)
    assert first.exit_code == 0, first.stderr
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    untrained = assistant_nll(tiny_models["llama"], QA)  # the same validation loss before training
    assert untrained > log[0]["loss"] > log[-1]["loss"] and log[-1]["loss"] < 0.25 * untrained, (untrained, log)
    assert first.json()["data"]["cache"] == "miss"

    [entry] = [p for p in (tmp_path / "cache" / "features").iterdir() if (p / "manifest.json").is_file()]
    features = store.load(entry)
    tok = tokenizers["llama"]
    answers, whole = {answer + END for _, answer in QA}, []
    for ids, labels in zip(features.columns["input_ids"], features.columns["labels"]):
        ids, labels = ids.tolist(), labels.tolist()
        for a, b in learned_spans(ids, labels):
            text = tok.decode(ids[a:b])
            assert any(text in answer for answer in answers), text  # a block's edge may cut an answer
            if 0 < a and b < len(ids):
                whole.append(text)
    assert set(whole) == answers and len(whole) > 30
    assert "example_starts" in features.columns

    second = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run2"), "--json",
                     "--set", "train.max_steps=1", env=env)
    assert second.exit_code == 0, second.stderr
    assert second.json()["data"]["cache"] == "hit"
    retemplated = tmp_path / "retemplated"
    cache_key_changes_with_the_template(tiny_models["llama"], retemplated)
    third = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run3"), "--json",
                    "--set", "train.max_steps=1", "--set", f"model.name_or_path={retemplated}", env=env)
    assert third.exit_code == 0, third.stderr
    assert third.json()["data"]["cache"] == "miss"

    evaluated = run_cli("eval", str(tmp_path / "run"), "--data", str(valid), "--json", env=env)
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.json()["metrics"]["loss"] == pytest.approx(assistant_nll(tmp_path / "run" / "model", QA),
                                                                rel=1e-4)

    questions = [{"messages": [turn("user", q)]} for q, _ in QA]
    write_jsonl(tmp_path / "ask.jsonl", questions)
    predicted = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "ask.jsonl"), "--json", env=env)
    assert predicted.exit_code == 0, predicted.stderr
    rows = predicted.json()["predictions"]
    assert [r["prompt"] for r in rows] == [q for q, _ in QA]
    assert [r["completion"].strip() for r in rows] == [a for _, a in QA]


def cache_key_changes_with_the_template(model_dir, dest):
    """A copy of the model whose chat template text differs (a Jinja comment), not its renders."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(model_dir, dest)
    tok = AutoTokenizer.from_pretrained(dest)
    tok.chat_template = "{# another revision #}" + tok.chat_template
    tok.save_pretrained(dest)


def assistant_nll(model_dir, qa) -> float:
    """The mean next-token loss over the answer tokens and <|im_end|> of each conversation,
    computed here from the rendered text, independently of llmctl's masking."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for question, answer in qa:
        prompt = tok.apply_chat_template([turn("user", question)], tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        target = tok(answer + END, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + target])
        with torch.no_grad():
            logits = lm(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
        total += torch.nn.functional.cross_entropy(logits.double(), torch.tensor(target), reduction="sum").item()
        count += len(target)
    return total / count


BAD_ROWS = {
    "ends with a user turn": ([turn("user", "hi"), turn("assistant", "yo"), turn("user", "and?")],
                              "the conversation ends with a user turn, not an assistant turn"),
    "unknown role": ([turn("user", "hi"), turn("robot", "beep"), turn("assistant", "yo")],
                     "message 2 has the unknown role 'robot'"),
    "non-string content": ([turn("user", "hi"), turn("assistant", 42)],
                           "message 2 (assistant) has content of type int, not a string"),
    "not a list": ("hello", "the messages column holds str 'hello'"),
    "missing": (None, "the messages column holds nothing; it must be a list of"),
    "not role/content": ([{"speaker": "user", "text": "hi"}], "message 1 is {'speaker': 'user'"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_cli_refuses_a_bad_conversation_naming_its_line(case, tiny_models, tmp_path):
    value, message = BAD_ROWS[case]
    rows = qa_rows(4) + [{"messages": value}] + qa_rows(2)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = chat_recipe(tmp_path / "r.yaml", tiny_models["llama"], train, None)
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_DATA, result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {train}:5: {message}"), line
    assert not (tmp_path / "run").exists()


def test_cli_refuses_chat_data_for_a_tokenizer_without_a_template(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(4))
    recipe = chat_recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, None)
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_USAGE, result.stderr
    [line] = error_lines(result.stderr)
    assert f"the tokenizer of '{tiny_models['gpt2']}' has no chat template" in line
    assert "Use a chat/instruct model, or give the data as prompt/completion columns" in line
    assert not (tmp_path / "run").exists()


def test_chat_template_without_pairs_is_a_recipe_error(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "hello"}])
    recipe = chat_recipe(tmp_path / "r.yaml", tiny_models["llama"], train, None, data={"chat_template": True})
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_USAGE
    assert "data.chat_template renders prompt/completion pairs: set data.prompt_column" in result.stderr


def test_cli_predict_refuses_a_conversation_that_is_already_answered(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(4))
    recipe = chat_recipe(tmp_path / "r.yaml", tiny_models["qwen2"], train, None,
                         train_cfg={"max_steps": 1, "save_every": 1})
    assert run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run")).exit_code == 0
    write_jsonl(tmp_path / "ask.jsonl", [{"prompt": "plain text works too"}] + qa_rows(1))
    result = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "ask.jsonl"))
    assert result.exit_code == EXIT_DATA
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {tmp_path / 'ask.jsonl'} row 2: the conversation to answer ends with an "
                           "assistant turn"), line


# -- the real SmolLM2 (slow) -----------------------------------------------------------------
@pytest.mark.slow
def test_real_smollm2_template_mask_and_packed_logits(tmp_path):
    """SmolLM2-135M-Instruct's own template (a default system turn) and tokenizer: the mask is
    token-exact, and packed conversations give the logits each gives alone on the real Llama
    architecture (grouped-query attention, rotary positions)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok.pad_token = tok.pad_token or tok.eos_token
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CONVERSATIONS])
    task, features = featurize(path, tok, max_length=512)
    for messages, ids, labels in zip(CONVERSATIONS, features.columns["input_ids"], features.columns["labels"]):
        assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert [tok.decode(run) for run in learned_runs(ids, labels)] == [
            m["content"] + END for m in messages if m["role"] == "assistant"]

    task, packed_features = featurize(path, tok, max_length=512, packing=True)
    assert len(packed_features) == 1
    batch = task.collate(packed_features.rows([0]), tok)
    lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    with torch.no_grad():
        packed = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"]).logits[0]
        edges = [0, *packed_features.columns["example_starts"][0], packed_features.lengths[0]]
        for (start, end), ids in zip(zip(edges, edges[1:]), features.columns["input_ids"]):
            alone = lm(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(packed[start:end], alone, rtol=1e-4, atol=1e-4)


def test_cli_refuses_a_template_whose_prefixes_are_not_prefixes_of_the_whole(tiny_models, tmp_path):
    """A template whose generation prompt is not how it renders an assistant turn's start: the
    assistant turn cannot be located, so training stops naming the row instead of guessing."""
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(tiny_models["llama"], model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = tok.chat_template.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant:\\n'")
    assert "assistant:" in tok.chat_template
    tok.save_pretrained(model)
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(3))
    recipe = chat_recipe(tmp_path / "r.yaml", model, train, None)
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_DATA
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {train}:1: the chat template renders the conversation up to message 2 as text "
                           "that is not the start of the whole conversation"), line
    assert not (tmp_path / "run").exists()
