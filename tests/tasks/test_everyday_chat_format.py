"""Issue 27 item 10: ShareGPT-style data (`conversations` of from/value turns) on a chat recipe
is named as such, with the setting to change, instead of an empty-text warning and an error
about data.text_column."""

import json

from helpers import ONE_THREAD, error_lines, run_cli
from llmctl.errors import EXIT_DATA


def test_sharegpt_conversations_on_a_chat_recipe_name_the_messages_column(tiny_models, tmp_path):
    train = tmp_path / "sg.jsonl"
    turns = [{"from": "human", "value": "is it good"}, {"from": "gpt", "value": "yes"}]
    train.write_text("".join(json.dumps({"conversations": turns}) + "\n" for _ in range(4)))
    args = ["finetune", "causal-lm/chat-smollm2", "--model", str(tiny_models["qwen2"]), "--set", f"data.train={train}",
            "--set", "data.validation=null", "--set", "train.metric_for_best=null", "--set", "data.max_length=64",
            "--output-dir", str(tmp_path / "run")]
    expected = (f"{train}: column 'conversations' looks like ShareGPT-style chat data (conversations of from/value "
                "turns), but data.messages_column is 'messages', which the file lacks, so its rows would be read as "
                "plain text. Set data.messages_column: conversations (--set data.messages_column=conversations), or "
                'convert the turns to {"role", "content"} messages in a messages column.')
    real = run_cli(*args, env=ONE_THREAD)
    assert real.exit_code == EXIT_DATA
    assert error_lines(real.stderr) == [f"error: {expected}"]
    dry = run_cli(*args, "--dry-run", env=ONE_THREAD)
    assert dry.exit_code == EXIT_DATA
    assert f"error: [read] train: {expected}" in dry.stdout
    assert "empty_text" not in dry.stdout and "text_column" not in dry.stdout + dry.stderr
    assert not (tmp_path / "run").exists()
