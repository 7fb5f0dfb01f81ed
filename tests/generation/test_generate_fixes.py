"""`llmctl generate` and text-to-text fixes ("Nothing lost, nothing silent", point 8), each through
the real CLI on real files: unset sampling knobs stay off, integer seq2seq targets get words,
batching claims, csv/tsv prompt files, --system and multi-turn chat rows, Ctrl-C keeps the
finished rows, and --device errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, run_cli
from llmctl.errors import EXIT_DATA, EXIT_INTERRUPTED, EXIT_USAGE

TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def rows_of(result):
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def in_process(model, prompts, precision="fp32", **settings) -> list[dict]:
    """generate_text without a subprocess: the reference a CLI run is compared with."""
    from llmctl.generation.generate import Settings
    from llmctl.generation.prompts import Prompt
    from llmctl.core.generate import generate_text

    items = [Prompt(text, f"argument {i}") for i, text in enumerate(prompts, start=1)]
    return generate_text(str(model), items, Settings(**settings), precision=precision,
                         warn=lambda message: None)["results"]


def one_line_error(result, code, *parts):
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


# -- 1. only the decoding options given apply ----------------------------------------------------
def test_unset_sampling_knobs_are_off_in_what_transformers_runs(tiny_models, monkeypatch):
    """Spy on the logits warpers transformers builds inside generate(): --sample alone must sample
    from the whole distribution (no top-k 50 from transformers' defaults), and only given knobs apply."""
    import transformers.generation.utils as gen_utils

    from llmctl.generation.generate import Settings
    from llmctl.generation.prompts import Prompt
    from llmctl.core.generate import generate_text

    made = []

    def spy(base, name):
        class Spy(base):
            def __init__(self, *args, **kwargs):
                made.append((name, args, kwargs))
                super().__init__(*args, **kwargs)
        return Spy

    for name in ("TopKLogitsWarper", "TopPLogitsWarper", "TemperatureLogitsWarper"):
        monkeypatch.setattr(gen_utils, name, spy(getattr(gen_utils, name), name))

    def warpers(**settings):
        made.clear()
        generate_text(str(tiny_models["gpt2"]), [Prompt("Alice", "argument 1")], Settings(max_new_tokens=2, **settings),
                      precision="fp32", warn=lambda message: None)
        return sorted((name, k.get("top_k", k.get("top_p", a[0] if a else None))) for name, a, k in made)

    assert warpers(sample=True, seed=1) == []
    assert warpers(top_k=5, seed=1) == [("TopKLogitsWarper", 5)]
    assert warpers(top_k=0, seed=1) == []  # 0: top-k off, still sampling
    assert warpers(temperature=0.7, top_p=0.9, seed=1) == [("TemperatureLogitsWarper", 0.7), ("TopPLogitsWarper", 0.9)]
    from llmctl.generation.decoding import decoding

    assert decoding(Settings(sample=True).check()) == {"do_sample": True, "num_beams": 1, "repetition_penalty": 1.0,
                                                       "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def test_cli_ignores_and_names_the_checkpoints_sampling_defaults(tiny_models, tmp_path):
    # A checkpoint whose generation_config.json would make "--sample" greedy (top_k 1).
    model = tmp_path / "opinionated-gpt2"
    shutil.copytree(tiny_models["gpt2"], model)
    config = json.loads((model / "generation_config.json").read_text())
    config |= {"do_sample": True, "top_k": 1, "temperature": 0.05, "top_p": 0.1}
    (model / "generation_config.json").write_text(json.dumps(config))
    common = ("generate", str(model), "The movie was", "Alice", "--max-new-tokens", "12", "--precision", "fp32", "--json")

    greedy = run_cli(*common)
    assert greedy.exit_code == 0, greedy.stderr
    assert "generation_config.json sets do_sample=True, temperature=0.05, top_k=1, top_p=0.1" in greedy.stderr
    assert "ignores it" in greedy.stderr
    plain = in_process(tiny_models["gpt2"], ["The movie was", "Alice"], max_new_tokens=12)
    assert greedy.json()["results"] == plain  # greedy, as no option asked for sampling

    sampled = run_cli(*common, "--sample", "--seed", "3")
    assert sampled.exit_code == 0, sampled.stderr
    out = sampled.json()
    assert out["stats"]["decoding"] == {"do_sample": True, "num_beams": 1, "repetition_penalty": 1.0,
                                        "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    # Sampled from the whole distribution: not the greedy text the checkpoint's top_k 1 would give.
    completions = [r["completion"] for r in out["results"]]
    assert completions != [r["completion"] for r in greedy.json()["results"]]
    top1 = run_cli(*common, "--top-k", "1", "--seed", "3")  # a given knob applies
    assert [r["completion"] for r in top1.json()["results"]] == [r["completion"] for r in greedy.json()["results"]]


# -- 2. integer seq2seq targets from a local file ------------------------------------------------
def test_sst2_t5_text_recipe_on_local_tsv_trains_on_label_words(tiny_models, tmp_path):
    from helpers import sentiment_rows, write_csv

    train = write_csv(tmp_path / "train.tsv", sentiment_rows(16), delimiter="\t")  # GLUE layout: sentence, 0/1 label
    valid = write_csv(tmp_path / "dev.tsv", sentiment_rows(4), delimiter="\t")
    args = ("finetune", str(REPO / "llmctl" / "recipes" / "seq2seq" / "sst2-t5-text.yaml"), "--model", str(tiny_models["t5"]),
            "--set", "data.dataset=null", "--set", "data.config=null", "--set", f"data.train={train}",
            "--set", f"data.validation={valid}", "--set", "train.batch_size=8", "--set", "train.eval_batch_size=8",
            "--set", "train.precision=fp32", "--max-steps", "1", "--json")
    result = run_cli(*args, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.stderr
    assert "label words" not in result.stderr
    meta = json.loads((tmp_path / "run" / "model" / "llmctl.json").read_text())
    assert meta["data"]["label_words"] == ["negative", "positive"]

    # Without the words the run still works (a target may be a number to write) but says what it learns.
    bare = run_cli(*args, "--set", "data.label_words=null", "--output-dir", str(tmp_path / "bare"))
    assert bare.exit_code == 0, bare.stderr
    assert (f"warning: data.train: column 'label' of {train} holds integers (0, 1) and there are no label words "
            "for them, so the model learns to write the digits. Set data.label_words") in bare.stderr


# -- 3. what batching keeps ----------------------------------------------------------------------
PROMPTS = ["The movie was", "I really loved this film, but the acting was", "Alice",
           "When did Bob Smith visit Paris?", "the", "Emma works as a", "a dull and boring"]


def test_batching_claims_through_the_cli(tiny_models, tmp_path):
    model = str(tiny_models["gpt2"])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")

    def completions(*flags):
        return [r["completion"] for r in rows_of(run_cli("generate", model, "--file", str(prompts),
                                                         "--max-new-tokens", "12", *flags))]

    # fp32: batched equals one by one (prompts of different lengths share left-padded batches).
    one_by_one = [r["completion"] for r in in_process(model, PROMPTS, max_new_tokens=12, batch_size=1)]
    assert completions("--precision", "fp32", "--batch-size", "7") == one_by_one
    # bf16, --batch-size 1: each prompt's output is what it gets alone, whatever else is in the file.
    together = completions("--precision", "bf16", "--batch-size", "1")
    alone = [in_process(model, [p], "bf16", max_new_tokens=12)[0]["completion"] for p in PROMPTS]
    assert together == alone


# -- 4. csv / tsv prompt files ---------------------------------------------------------------------
def test_csv_and_tsv_prompt_files(tiny_models, tmp_path):
    model = str(tiny_models["gpt2"])
    (tmp_path / "p.csv").write_text('id,prompt\n1,The movie was\n2,"Alice, Bob and"\n')
    (tmp_path / "p.tsv").write_text("prompt\tid\nThe movie was\t1\nAlice, Bob and\t2\n")
    rows = rows_of(run_cli("generate", model, "--file", str(tmp_path / "p.csv"), "--max-new-tokens", "3"))
    assert [r["prompt"] for r in rows] == ["The movie was", "Alice, Bob and"]  # no header row as a prompt
    from llmctl.generation.prompts import read_prompts

    tsv = read_prompts([], str(tmp_path / "p.tsv"))
    assert [(p.text, p.where) for p in tsv] == [("The movie was", f"{tmp_path / 'p.tsv'}:2"),
                                               ("Alice, Bob and", f"{tmp_path / 'p.tsv'}:3")]

    (tmp_path / "no_prompt.csv").write_text("text,id\nhello,1\n")
    one_line_error(run_cli("generate", model, "--file", str(tmp_path / "no_prompt.csv")), EXIT_DATA,
                   f"{tmp_path / 'no_prompt.csv'} has no 'prompt' column; its columns are: text, id")
    (tmp_path / "blank.csv").write_text("prompt,id\nhello,1\n,2\n")
    one_line_error(run_cli("generate", model, "--file", str(tmp_path / "blank.csv")), EXIT_DATA,
                   f"{tmp_path / 'blank.csv'}:3: 'prompt' is empty")
    (tmp_path / "notes.md").write_text("hello\n")
    one_line_error(run_cli("generate", model, "--file", str(tmp_path / "notes.md")), EXIT_DATA,
                   "unknown extension '.md'", ".csv / .tsv")


# -- 5. --system and multi-turn rows ---------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model(tiny_models, tmp_path_factory):
    from transformers import AutoTokenizer

    model = tmp_path_factory.mktemp("chat") / "chat-gpt2"
    shutil.copytree(tiny_models["gpt2"], model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(model)
    return model


def test_system_prompt_and_conversation_rows(chat_model, tmp_path):
    model = str(chat_model)
    conversation = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who is Alice?"},
                    {"role": "assistant", "content": "A teacher."}, {"role": "user", "content": "Where?"}]
    rows = tmp_path / "chats.jsonl"
    rows.write_text(json.dumps({"messages": conversation}) + "\n" + json.dumps({"prompt": "hello there"}) + "\n")
    out = rows_of(run_cli("generate", model, "--file", str(rows), "--chat", "--max-new-tokens", "6", "--precision", "fp32"))
    rendered = "".join(f"{m['role']}: {m['content']}\n" for m in conversation) + "assistant:"
    # What the model saw is the rendered conversation: same completion as that text sent plainly.
    plain = in_process(model, [rendered], max_new_tokens=6)[0]
    assert out[0]["messages"] == conversation and out[0]["completion"] == plain["completion"]
    assert out[0]["prompt_tokens"] == plain["prompt_tokens"]
    assert out[1]["prompt"] == "hello there"

    system = rows_of(run_cli("generate", model, "hello there", "--chat", "--system", "Answer briefly.",
                             "--max-new-tokens", "6", "--precision", "fp32"))[0]
    alone = in_process(model, ["system: Answer briefly.\nuser: hello there\nassistant:"], max_new_tokens=6)[0]
    assert (system["completion"], system["prompt_tokens"]) == (alone["completion"], alone["prompt_tokens"])


def test_bad_conversations_are_named_by_line(chat_model, tmp_path):
    model = str(chat_model)

    def refused(lines, *flags):
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return run_cli("generate", model, "--file", str(path), *flags), path

    ok = {"prompt": "hello"}
    result, path = refused([ok, {"messages": [{"role": "bot", "content": "hi"}]}], "--chat")
    one_line_error(result, EXIT_DATA, f"{path}:2: message 1 has role 'bot', not one of system, user, assistant")
    result, path = refused([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
                           "--chat")
    one_line_error(result, EXIT_DATA, f"{path}:1: the last message is from 'assistant'")
    result, path = refused([{"messages": [{"role": "user"}]}], "--chat")
    one_line_error(result, EXIT_DATA, f"{path}:1: message 1 needs 'role' and 'content'")
    result, path = refused([ok, {"messages": [{"role": "user", "content": "hi"}]}])
    one_line_error(result, EXIT_USAGE, f"{path}:2: a 'messages' row needs --chat")
    result, path = refused([{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}],
                           "--chat", "--system", "y")
    one_line_error(result, EXIT_DATA, f"{path}:1: the conversation has its own system message and --system")
    one_line_error(run_cli("generate", model, "hi", "--system", "y"), EXIT_USAGE, "--system needs --chat")


# -- 6. Ctrl-C keeps what is done -----------------------------------------------------------------
def _interrupt(args, rows: int = 0, stderr_has: str | None = None):
    """Start `llmctl ARGS`; send SIGINT once `rows` stdout lines arrived or stderr shows `stderr_has`."""
    import threading

    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    lines, deadline = [], time.monotonic() + 300  # a guard against a hang, generous for a loaded CI host
    while len(lines) < rows:
        line = proc.stdout.readline()
        assert line, "".join(err)  # the run ended (or failed) before enough rows arrived
        lines.append(line)
    while stderr_has is not None and not any(stderr_has in line for line in err):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(err)
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    return code, "".join(lines) + rest, "".join(err)


def test_sigint_prints_the_finished_rows_then_exits_130(tiny_models, tmp_path):
    prompts = [f"{'the movie was ' * (i % 5)}prompt {i}" for i in range(1000)]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(prompts) + "\n")
    args = ("generate", str(tiny_models["gpt2"]), "--file", str(path), "--batch-size", "1", "--max-new-tokens", "8",
            "--precision", "fp32")

    code, stdout, stderr = _interrupt(args, rows=10)  # rows arrive while the run goes on, in input order
    assert code == EXIT_INTERRUPTED, stderr
    found = re.search(r"error: interrupted after (\d+) of 1000 prompt\(s\); rows printed for prompts ([\d, -]+)\. "
                      r"The others were not generated\.", stderr)
    assert found, stderr
    printed = [json.loads(line) for line in stdout.splitlines()]
    assert 10 <= len(printed) == int(found.group(1)) < 1000
    positions = [prompts.index(r["prompt"]) for r in printed]
    assert positions[:10] == list(range(10)) and positions == sorted(set(positions))  # input order, none twice
    assert all(r["finish_reason"] == "length" for r in printed)

    # The pad warning comes just before the weights load, inside the run; generation follows.
    code, stdout, stderr = _interrupt((*args, "--json"), stderr_has="has no pad token")
    assert code == EXIT_INTERRUPTED and "error: interrupted after" in stderr, stderr
    out = json.loads(stdout)
    assert out["interrupted"] is True and len(out["results"]) == 1000
    done = int(re.search(r"interrupted after (\d+) of", stderr).group(1))
    assert sum(r is not None for r in out["results"]) == done


# -- 7. --device -------------------------------------------------------------------------------------
def test_unknown_or_absent_device_is_one_line_exit_2_before_the_model(tiny_models, tmp_path):
    missing = str(tmp_path / "no-such-model")  # the device is checked before the model is looked for
    one_line_error(run_cli("generate", missing, "hello", "--device", "tpu"), EXIT_USAGE,
                   "--device 'tpu' is not one of cpu, cuda, mps")
    import torch

    if not torch.cuda.is_available():
        one_line_error(run_cli("generate", str(tiny_models["gpt2"]), "hello", "--device", "cuda"), EXIT_USAGE,
                       "--device cuda: torch", "sees no CUDA device here")


def test_batches_and_row_order_units():
    import io

    from llmctl.generation.generate import WINDOW_BATCHES, batches
    from llmctl.cli._rows import RowPrinter, ranges

    lengths = [(i * 7) % 11 for i in range(50)]
    out = batches(lengths, 2)
    window = 2 * WINDOW_BATCHES
    assert sorted(i for b in out for i in b) == list(range(50))  # every prompt once
    flat = [i for b in out for i in b]
    for start in range(0, 50, window):  # windows of consecutive prompts, longest first inside each
        part = flat[start:start + window]
        assert sorted(part) == list(range(start, min(start + window, 50)))
        assert [lengths[i] for i in part] == sorted((lengths[i] for i in part), reverse=True)

    stream = io.StringIO()
    printer = RowPrinter(5, out=stream)
    printer.add([(1, {"n": 1})])
    assert stream.getvalue() == ""  # row 1 waits for row 0
    printer.add([(0, {"n": 0}), (3, {"n": 3})])
    assert [json.loads(x)["n"] for x in stream.getvalue().splitlines()] == [0, 1]
    error = printer.interrupted()
    assert [json.loads(x)["n"] for x in stream.getvalue().splitlines()] == [0, 1, 3]
    assert str(error) == "interrupted after 3 of 5 prompt(s); rows printed for prompts 1-2, 4. The others were not generated."
    assert error.exit_code == EXIT_INTERRUPTED and ranges([0, 1, 2, 5, 7, 8]) == "1-3, 6, 8-9"
