"""`generate --output FILE` and `--prompt-column NAME` (issue 27 item 19): prompts from a named
column of a table or field of jsonl rows, rows written to the file (nothing on stdout)."""

import json

from helpers import ONE_THREAD, run_cli, write_csv
from llmctl.errors import EXIT_DATA


def test_prompt_column_and_output_file(tiny_models, tmp_path):
    table = write_csv(tmp_path / "q.csv", [{"id": 1, "question": "the movie was"}, {"id": 2, "question": "a film"}])
    target = tmp_path / "out.jsonl"
    result = run_cli("generate", str(tiny_models["gpt2"]), "--file", str(table), "--prompt-column", "question",
                     "--output", str(target), "--max-new-tokens", "3", "--precision", "fp32", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert f"wrote 2 rows to {target}" in result.stderr
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["the movie was", "a film"]
    assert all(r["completion"] for r in rows)

    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"question": "the movie was"}\n')
    again = run_cli("generate", str(tiny_models["gpt2"]), "--file", str(jsonl), "--prompt-column", "question",
                    "--max-new-tokens", "3", "--precision", "fp32", "--json", env=ONE_THREAD)
    assert again.exit_code == 0, again.stderr
    assert again.json()["results"][0]["completion"] == rows[0]["completion"]


def test_missing_prompt_column_names_the_option(tiny_models, tmp_path):
    table = write_csv(tmp_path / "q.csv", [{"question": "the movie was"}])
    result = run_cli("generate", str(tiny_models["gpt2"]), "--file", str(table))
    assert result.exit_code == EXIT_DATA
    assert "has no 'prompt' column; its columns are: question" in result.stderr
    assert "--prompt-column" in result.stderr
