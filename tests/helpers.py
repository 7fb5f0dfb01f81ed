"""Helpers for tests that drive the CLI the way a user does."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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

    def json(self):
        return json.loads(self.stdout)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None,
            timeout: int = 600) -> Result:
    """Run `python -m llmctl ARGS` in a subprocess, exactly as a user's shell would."""
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)} | (env or {})
    full_env = {k: v for k, v in full_env.items() if v is not None}
    proc = subprocess.run([sys.executable, "-m", "llmctl", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


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
    import yaml

    recipe = {
        "task": "classification",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(train_file), "validation": str(valid_file) if valid_file else None,
                 "text_columns": ["sentence"], "label_column": "label", "max_length": 32},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-3,
                  "precision": "fp32", "logging_steps": 1},
        "output_dir": str(output_dir),
    }
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
