"""`llmctl generate`: batched = unbatched greedy output, exact stop strings, finish reasons,
seeded sampling, streaming, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, read_terminal, run_cli
from llmctl.errors import EXIT_DATA, EXIT_MODEL, EXIT_USAGE

PROMPTS = ["The movie was", "I really loved this film, but the acting was", "Alice",
           "When did Bob Smith visit Paris?", "the"]


def run(model, prompts=PROMPTS, **settings):
    from llmctl.generation.generate import Settings
    from llmctl.generation.prompts import Prompt
    from llmctl.core.generate import generate_text

    stream = settings.pop("stream", None)
    items = [Prompt(text, f"argument {i}") for i, text in enumerate(prompts, start=1)]
    return generate_text(str(model), items, Settings(**settings), precision="fp32", stream=stream,
                         warn=lambda message: None)


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_greedy_batched_equals_one_by_one(tiny_models, family):
    batched = run(tiny_models[family], max_new_tokens=16, batch_size=len(PROMPTS))["results"]
    alone = run(tiny_models[family], max_new_tokens=16, batch_size=1)["results"]
    assert [r["completion"] for r in batched] == [r["completion"] for r in alone]
    assert [r["prompt"] for r in batched] == PROMPTS  # input order, although batches are length-sorted
    assert any(r["completion"].strip() for r in batched)
    assert all(r["finish_reason"] == "length" and r["completion_tokens"] == 16 for r in batched)


def test_stop_strings_cut_exactly(tiny_models):
    full = run(tiny_models["gpt2"], max_new_tokens=12)["results"]
    # Stop strings taken from the middle of two completions (never at their start).
    stops = [full[0]["completion"][4:9], full[2]["completion"][3:10]]
    cut = run(tiny_models["gpt2"], max_new_tokens=12, stop=stops)["results"]
    for whole, row in zip(full, cut):
        hits = [whole["completion"].find(s) for s in stops if s in whole["completion"]]
        if hits:
            assert row["completion"] == whole["completion"][:min(hits)]
            assert row["finish_reason"] == "stop"
            assert 0 < row["completion_tokens"] < whole["completion_tokens"]
        else:  # rows without a stop string are untouched by the rows that stopped beside them
            assert row == whole
    assert sum(r["finish_reason"] == "stop" for r in cut) >= 2


def test_a_stop_string_spanning_the_prompt_does_not_stop(tiny_models):
    full = run(tiny_models["gpt2"], ["The movie was"], max_new_tokens=6)["results"][0]
    assert full["completion"].startswith(" was")  # the tiny model repeats itself
    row = run(tiny_models["gpt2"], ["The movie was"], max_new_tokens=6, stop=["was was was"])["results"][0]
    # "was" + " was was" completes the stop string only across the prompt boundary at first.
    first = full["completion"].find("was was was")
    assert row["completion"] == (full["completion"][:first] if first >= 0 else full["completion"])


def test_finish_reasons_from_ids(tiny_models):
    from transformers import AutoTokenizer

    from llmctl.generation.generate import finish

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    eos = tokenizer.eos_token_id
    ids = tokenizer(" the film was great and the cast")["input_ids"]
    assert finish(ids, tokenizer, {eos}, []) == (" the film was great and the cast", "length", len(ids))
    assert finish(ids[:3] + [eos, eos, eos], tokenizer, {eos}, []) == (" the film was", "eos", 4)
    text, reason, count = finish(ids + [eos], tokenizer, {eos}, ["great"])
    assert (text, reason) == (" the film was ", "stop")
    assert tokenizer.decode(ids[:count]).endswith("great")


def test_streamed_pieces_add_up_to_the_completion(tiny_models):
    pieces: list[str] = []
    full = run(tiny_models["gpt2"], ["Alice"], max_new_tokens=10)["results"][0]
    stop = full["completion"][6:10]
    out = run(tiny_models["gpt2"], ["Alice"], max_new_tokens=10, stop=[stop], stream=pieces.append)
    assert out["streamed"] and len(pieces) > 1
    assert "".join(pieces) == out["results"][0]["completion"] == full["completion"][:full["completion"].find(stop)]


def test_cli_rows_file_stdin_and_json(tiny_models, tmp_path):
    model = str(tiny_models["gpt2"])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(PROMPTS[:3])))
    result = run_cli("generate", model, "--file", str(prompts), "--max-new-tokens", "5", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS[:3]
    assert set(rows[0]) == {"prompt", "completion", "finish_reason", "prompt_tokens", "completion_tokens"}
    # GPT-2 has no pad token: fixed and said once, however many batches.
    assert result.stderr.count("has no pad token") == 1
    assert "tokens/s" in result.stderr
    piped = run_cli("generate", model, "--max-new-tokens", "5", "--json", input="Alice\n\nthe\n")
    assert piped.exit_code == 0, piped.stderr
    out = piped.json()
    assert [r["prompt"] for r in out["results"]] == ["Alice", "the"]
    assert out["stats"]["new_tokens"] == sum(r["completion_tokens"] for r in out["results"]) == 10
    assert out["stats"]["tokens_per_second"] > 0


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_seeded_sampling_is_reproducible(tiny_models, family):
    def sample(seed):
        out = run(tiny_models[family], PROMPTS[:2], max_new_tokens=12, temperature=1.5, top_k=200, top_p=0.95,
                  seed=seed)
        return [r["completion"] for r in out["results"]]

    first, again, other = sample(7), sample(7), sample(8)
    assert first == again != other


def test_beam_search_and_repetition_penalty(tiny_models):
    greedy = run(tiny_models["gpt2"], PROMPTS[:2], max_new_tokens=6)["results"]
    beams = run(tiny_models["gpt2"], PROMPTS[:2], max_new_tokens=6, num_beams=3, repetition_penalty=1.3)["results"]
    assert all(r["completion_tokens"] == 6 for r in beams)
    # The greedy tiny model repeats " was"; the penalty and beams move it off that.
    assert [r["completion"] for r in beams] != [r["completion"] for r in greedy]


def test_cli_streams_one_prompt_on_a_terminal(tiny_models):
    expected = run(tiny_models["gpt2"], ["Alice"], max_new_tokens=8)["results"][0]["completion"]
    leader, follower = pty.openpty()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", "generate", str(tiny_models["gpt2"]), "Alice",
                             "--max-new-tokens", "8", "--precision", "fp32"],
                            stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    shown = read_terminal(leader)
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 0, stderr
    assert shown == expected + "\n"  # the text itself, not a JSON row
    assert "[length]" in stderr


def test_bad_input_one_line_errors(tiny_models, tmp_path):
    gpt2 = str(tiny_models["gpt2"])
    encoder = run_cli("generate", str(tiny_models["bert"]), "hello")
    assert encoder.exit_code == EXIT_MODEL
    assert "encoder-only 'bert'" in encoder.stderr and "Decoder-only LMs (GPT-2, Llama" in encoder.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    no_prompts = run_cli("generate", gpt2, "--file", str(empty))
    assert no_prompts.exit_code == EXIT_DATA and "has no prompts" in no_prompts.stderr
    chat = run_cli("generate", gpt2, "--chat", "hello")
    assert chat.exit_code == EXIT_USAGE and "has no chat template" in chat.stderr
    long_prompt = "the movie was great " * 80
    too_long = run_cli("generate", gpt2, long_prompt, "--max-new-tokens", "10")
    assert too_long.exit_code == EXIT_DATA
    assert "context of 256 leaves 246" in too_long.stderr and "--truncate-left" in too_long.stderr
    cut = run_cli("generate", gpt2, long_prompt, "--max-new-tokens", "10", "--truncate-left", "--json")
    assert cut.exit_code == 0, cut.stderr
    assert cut.json()["results"][0]["prompt_tokens"] == 246 and "1 prompt(s) too long" in cut.stderr
    for result in (encoder, no_prompts, chat, too_long):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_chat_template_is_applied(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    model = tmp_path / "chat-gpt2"
    shutil.copytree(tiny_models["gpt2"], model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    tokenizer.save_pretrained(model)
    plain = run(model, ["hello there"], max_new_tokens=4)["results"][0]
    chat = run(model, ["hello there"], max_new_tokens=4, chat=True)["results"][0]
    assert chat["prompt_tokens"] == len(tokenizer("user: hello there\nassistant:")["input_ids"])
    assert chat["prompt_tokens"] > plain["prompt_tokens"]
