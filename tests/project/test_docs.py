"""The manual (docs/, README.md) stays honest: it names exactly the recipe keys the schema has,
every command and option `--help` lists, paths and modules that exist, shipped recipes whose
first line is a command llmctl accepts, and it builds with `mkdocs build --strict`."""

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel

from helpers import REPO, run_cli, sentiment_rows, write_csv
from llmctl.cli import app
from llmctl.config.load import list_recipes, resolve_recipe
from llmctl.config.schema import DataConfig, Recipe
from llmctl.tasks import TASKS

DOCS = REPO / "docs"
REFERENCE = DOCS / "reference" / "recipe.md"
RECIPES = REPO / "llmctl" / "recipes"


def pages() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(DOCS.rglob("*.md"))}


# ------------------------------------------------------------------------- recipe reference ----

def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted keys of a pydantic model, sections walked recursively (`train.learning_rate`)."""
    keys = set()
    for name, field in model.model_fields.items():
        section = next((t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                        if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if section is not None:
            keys |= schema_keys(section, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def documented_keys() -> dict[str, set[str]]:
    """The reference page's keys by heading: "## `data` (ner)" -> {"data.format", ...} under "ner";
    "## `train`" under "" (every task); "## Top level" has undotted keys. A table row documents
    each backticked name in its first cell."""
    found: dict[str, set[str]] = {}
    section, task = None, ""
    for line in REFERENCE.read_text().splitlines():
        heading = re.match(r"^#{2,3} (?:`([\w.]+)`(?: \(([\w -]+)\))?|Top level)\s*$", line)
        if heading:
            section, task = heading.group(1) or "", heading.group(2) or ""
            task = "" if task == "every task" else task
            continue
        if line.startswith("#"):
            section = None
        if section is None or not line.startswith("| `"):
            continue
        for key in re.findall(r"`(\w+)`", line.split("|")[1]):
            found.setdefault(task, set()).add(f"{section}.{key}" if section else key)
    return found


def test_recipe_reference_names_exactly_the_schema_keys():
    documented = documented_keys()
    assert set(documented) - {""} <= set(TASKS), f"reference sections for unknown tasks: {set(documented) - set(TASKS)}"
    common = documented.pop("")
    # Every key outside `data` is the same for every task, and documented once.
    general = schema_keys(Recipe[DataConfig]) - {f"data.{k}" for k in DataConfig.model_fields}
    assert sorted(general - common) == [], "schema keys missing from docs/reference/recipe.md"
    data_common = {f"data.{k}" for k in DataConfig.model_fields}
    assert sorted(common - general - data_common) == [], "documented keys the schema does not have"
    assert sorted(data_common - common) == [], "common data keys missing from the reference"
    for task, cls in TASKS.items():
        schema = schema_keys(Recipe[cls.data_config])
        task_keys = documented.get(task, set())
        assert sorted(schema - common - task_keys) == [], f"{task}: data keys missing from the reference"
        assert sorted(task_keys - schema) == [], f"{task}: documented keys the schema does not have"


def test_the_reference_parser_sees_every_table():
    # A guard on the parser above: the reference's tables are read, with their section names.
    documented = documented_keys()
    assert {"model.name_or_path", "train.learning_rate", "peft.r", "zero_shot.template", "task", "output_dir",
            "data.cache"} <= documented[""]
    assert "data.doc_stride" in documented["qa"] and "data.packing" in documented["causal-lm"]


# ------------------------------------------------------------------- commands and options ----

def commands():
    """(path, click command) for the root and every command and sub-command `--help` lists."""
    found = []

    def walk(cmd, path):
        found.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            if not sub.hidden:
                walk(sub, path + (name,))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = commands()


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "llmctl" for p, _ in COMMANDS])
def test_every_command_and_option_is_documented(path, cmd):
    page = DOCS / "commands" / (f"{path[0]}.md" if path else "index.md")
    assert page.is_file(), f"llmctl {' '.join(path)} has no page: write {page.relative_to(REPO)}"
    text = page.read_text()
    if len(path) > 1:
        assert f"## `llmctl {' '.join(path)}`" in text, f"{page.name} has no section for llmctl {' '.join(path)}"
    options = [o for p in cmd.params if p.param_type_name == "option" and not p.hidden for o in p.opts + p.secondary_opts]
    missing = [o for o in options if f"`{o}`" not in text]
    assert missing == [], f"{page.relative_to(REPO)} does not document {missing}"
    assert f"[`llmctl {path[0]}`]({path[0]}.md)" in (DOCS / "commands" / "index.md").read_text() if path else True


def test_readme_tours_every_command():
    readme = (REPO / "README.md").read_text()
    for path, _ in COMMANDS:
        if len(path) == 1:
            assert f"[`llmctl {path[0]}`](docs/commands/{path[0]}.md)" in readme, path[0]
            assert re.search(rf"^llmctl {path[0]} ", readme, flags=re.M), f"no example of llmctl {path[0]}"
    assert len(readme.splitlines()) <= 250


# ---------------------------------------------------------------------- what the text names ----

def test_links_paths_and_modules_named_exist():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (REPO / target).exists(), f"README.md links to {target}, which does not exist"
    texts = {"README.md": readme, "Makefile": (REPO / "Makefile").read_text(),
             **{str(p.relative_to(REPO)): t for p, t in pages().items()}}
    for name, text in texts.items():
        for path in re.findall(r"`((?:llmctl|tests|bench)/[\w./-]+)`", text):
            assert (REPO / path).exists(), f"{name} names {path}, which does not exist"
        for module in re.findall(r"python -m (llmctl[\w.]*)", text):
            assert importlib.util.find_spec(module) is not None, f"{name} runs python -m {module}, which is gone"


def test_docs_exit_code_table_is_the_readmes():
    def table(text):
        section = text.split("\n## Exit codes\n", 1)[1].split("\n#", 1)[0]
        return [line for line in section.splitlines() if line.startswith("|")]

    readme = table((REPO / "README.md").read_text())
    assert len(readme) == 10
    assert table((DOCS / "ci.md").read_text()) == readme


# ------------------------------------------------------------------------- shipped recipes ----

SHIPPED = sorted(RECIPES.rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(RECIPES).with_suffix("").as_posix())
def test_each_recipe_opens_with_a_command_llmctl_accepts(path):
    # tests/config/test_recipes.py checks the command names this recipe; here click parses the whole
    # line, flags included, with --dry-run added (the model the line computes with $(python -c
    # ...) becomes a placeholder: parsing loads nothing).
    words = shlex.split(path.read_text().splitlines()[0].removeprefix("# "))
    words = ["MODEL" if word.startswith("$(") else word for word in words]
    assert words[0] == "llmctl" and words[1] in ("finetune", "eval"), words
    command = dict(commands())[(words[1],)]
    context = command.make_context(words[1], [*words[2:], *(["--dry-run"] if words[1] == "finetune" else [])])
    name = context.params["recipe"]
    assert resolve_recipe(name) == path and name in list_recipes()


def test_quickstart_recipe_dry_run_from_its_first_line(tmp_path, tiny_models):
    # The one shipped recipe whose data is generated, not downloaded: its first line, run with a
    # local model from a folder holding the data it reads, passes the dry run.
    rows = [{"text": row["sentence"], "label": row["label"]} for row in sentiment_rows(12)]
    (tmp_path / "data" / "quickstart").mkdir(parents=True)
    write_csv(tmp_path / "data" / "quickstart" / "train.csv", rows)
    write_csv(tmp_path / "data" / "quickstart" / "validation.csv", rows)
    words = shlex.split((RECIPES / "quickstart" / "sentiment-minilm.yaml").read_text().splitlines()[0][2:])
    words = [str(tiny_models["bert"]) if word.startswith("$(") else word for word in words]
    result = run_cli(*words[1:], "--dry-run", cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------- build ----

def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs / mkdocs-material not installed: pip install -e '.[docs]' (make test installs them)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "recipe" / "index.html").is_file()
    shutil.rmtree(tmp_path / "site")
