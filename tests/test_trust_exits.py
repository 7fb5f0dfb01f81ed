"""Issue 25, items 15, 16 and 20: chat templates rendered within a budget, predict inputs cut
while they are read, and the exit codes the README's table promises, each driven through the
real CLI on real files: the exit code, the one `error:` line, no traceback, no temp file left,
and every file that was there before byte-identical after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import ONE_THREAD, error_lines, run_cli

CHAT_HANG = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every regular file under the roots, with its bytes."""
    return {p: p.read_bytes() for root in roots for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.is_symlink()}


def assert_refused(result, code: int, line: str, before: dict[Path, bytes]) -> None:
    """Exit `code`, exactly one error line `line`, no traceback, and the files of `before`
    untouched, with no temp file beside them."""
    assert result.exit_code == code, (result.exit_code, result.stderr[-2000:])
    assert error_lines(result.stderr) == [line], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"
    roots = {p.parent for p in before}
    leftovers = [p for root in roots for p in root.iterdir() if ".tmp" in p.name or p.name.endswith(".partial")]
    assert not leftovers, leftovers


def hanging_chat_model(tiny_models, dest: Path) -> Path:
    """The tiny llama with a chat template of two nested range(100000) loops (10^10 steps)."""
    shutil.copytree(tiny_models["llama"], dest)
    (dest / "chat_template.jinja").write_text(CHAT_HANG + "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return dest


def chat_budget_line(model: Path) -> str:
    return (f"error: the chat template of '{model}' ran past 2,000,000 template steps rendering one conversation "
            "(a loop without end, or far too long); llmctl stopped it. Fix the template (chat_template.jinja or "
            "tokenizer_config.json's chat_template) or use another model.")


# -- item 15: chat templates rendered within a budget ----------------------------------------
def test_generate_chat_refuses_a_template_that_runs_forever(tiny_models, tmp_path):
    model = hanging_chat_model(tiny_models, tmp_path / "hang")
    before = snapshot(model)
    result = run_cli("generate", str(model), "--chat", "hello", timeout=300)
    assert_refused(result, 5, chat_budget_line(model), before)


def test_chat_fine_tuning_data_refuses_a_template_that_runs_forever(tiny_models, tmp_path):
    model = hanging_chat_model(tiny_models, tmp_path / "hang")
    train = tmp_path / "chat.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "causal-lm", "model": {"name_or_path": str(model)},
                                      "data": {"train": str(train), "validation": None, "max_length": 32},
                                      "train": {"max_steps": 1, "batch_size": 1, "precision": "fp32"},
                                      "output_dir": str(tmp_path / "run")}))
    before = snapshot(model, tmp_path)
    result = run_cli("finetune", str(recipe), env=ONE_THREAD | {"LLMCTL_CACHE_DIR": str(tmp_path / "cache")},
                     timeout=300)
    assert_refused(result, 5, chat_budget_line(model), before)


# -- a trained classifier shared by the tests that only read it --------------------------------
@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    from helpers import sentiment_rows, write_csv, write_recipe

    tmp = tmp_path_factory.mktemp("run")
    train = write_csv(tmp / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, None, tmp / "run")
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return tmp / "run"


# -- item 16: predict cuts an input to what max_length tokens can use, before tokenizing --------
def test_predict_cuts_a_huge_line_before_tokenizing_it(run_dir, tmp_path):
    words = "great awful film plot acting the a was".split()
    long = " ".join(words[i * 7 % 8] for i in range(200_000))  # about 1 MB on one line
    inputs = tmp_path / "in.txt"
    inputs.write_text(f"{long}\n{long[:2000]}\n")
    before = snapshot(tmp_path)
    result = run_cli("predict", str(run_dir), "--input", str(inputs), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    # max_length 32 x 100 characters a token can cover (an unknown word) x 2 = 6,400.
    assert (f"cut 1 input(s) of {inputs} to their first 6,400 characters, more than the model's max_length "
            "tokens can use (predictions echo the text as cut).") in result.stderr.splitlines()
    cut, short = [json.loads(line) for line in result.stdout.splitlines()]
    assert cut["sentence"] == long[:6400] and cut["line"] == 1
    # The model read the same first 32 tokens of both: the same prediction.
    assert (cut["label"], cut["scores"]) == (short["label"], short["scores"])
    assert snapshot(tmp_path) == before
