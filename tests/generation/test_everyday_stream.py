"""Issue 27 item 23: `llmctl generate` on a terminal streams the completion from the first line,
with no blank line before it, for a .gguf file too (its de-quantize bar drew only a newline there)."""

import os
import pty
import subprocess
import sys

from helpers import cli_env, read_terminal, run_cli
from test_gguf import write_llama_gguf


def on_a_terminal(*args: str) -> tuple[int, str]:
    """`llmctl ARGS` with stdout and stderr on one terminal, as a user sees it: (exit code, screen)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", *args], stdout=follower, stderr=follower,
                            env=cli_env())
    os.close(follower)
    shown = read_terminal(leader)
    return proc.wait(), shown


def test_streamed_gguf_completion_has_no_leading_blank_line(tiny_models, tmp_path):
    gguf = write_llama_gguf(tiny_models["llama"], tmp_path / "tiny.F32.gguf")
    expected = run_cli("generate", str(gguf), "Alice", "--max-new-tokens", "4", "--precision", "fp32", "--json")
    assert expected.exit_code == 0, expected.stderr
    completion = expected.json()["results"][0]["completion"]
    code, screen = on_a_terminal("generate", str(gguf), "Alice", "--max-new-tokens", "4", "--precision", "fp32")
    assert code == 0, screen
    lines = screen.split("\n")
    assert "" not in lines[:-1], screen  # no blank line anywhere before the end
    assert completion + "\n[length]\n" in screen
