"""Issue 27 items 10 and 17: ShareGPT-style data (`conversations` of from/value turns) on a chat
recipe is read as the conversations it is: no empty-text warning, no error about
data.text_column, in the dry run as in the real run."""

import json

from helpers import ONE_THREAD, run_cli
from llmctl.errors import EXIT_OK


def test_sharegpt_conversations_on_a_chat_recipe_are_read_as_chat(tiny_models, tmp_path):
    train = tmp_path / "sg.jsonl"
    turns = [{"from": "human", "value": "is it good"}, {"from": "gpt", "value": "yes"}]
    train.write_text("".join(json.dumps({"conversations": turns}) + "\n" for _ in range(4)))
    args = ["finetune", "causal-lm/chat-smollm2", "--model", str(tiny_models["qwen2"]), "--set", f"data.train={train}",
            "--set", "data.validation=null", "--set", "train.metric_for_best=null", "--set", "data.max_length=64",
            "--output-dir", str(tmp_path / "run")]
    dry = run_cli(*args, "--dry-run", env=ONE_THREAD)
    assert dry.exit_code == EXIT_OK, dry.stdout + dry.stderr
    assert "0 error(s)" in dry.stdout
    assert "empty_text" not in dry.stdout and "text_column" not in dry.stdout + dry.stderr
    assert not (tmp_path / "run").exists()
    real = run_cli(*args, "--json", env=ONE_THREAD)
    assert real.exit_code == EXIT_OK, real.stderr
    assert "text_column" not in real.stderr and json.loads(real.stdout)["train"]["steps"] >= 1
