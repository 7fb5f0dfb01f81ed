"""Exit codes are an interface: the README table, llmctl.errors, `llmctl --help` and what the
CLI really returns agree, pinned here once as literals; tracebacks appear only with --debug
or LLMCTL_DEBUG=1; an unexpected exception is one line and exit 1."""

import re
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO, cli_env, error_lines, run_cli
from llmctl import errors

# The documented codes: changing one breaks every script that reads them.
CODES = {0: "success", 1: "runtime failure", 2: "usage or recipe error", 3: "data error", 4: "gate failed",
         5: "model not found", 130: "interrupted", 141: "closed the pipe"}


def readme_exit_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.M)
    assert rows, section[:500]
    return {int(code): meaning for code, meaning in rows}


def test_readme_table_has_exactly_the_documented_codes():
    table = readme_exit_codes()
    assert sorted(table) == [0, 1, 2, 3, 4, 5, 130, 141]
    for code, words in CODES.items():
        assert words in table[code], (code, table[code])


def test_llmctl_errors_constants_and_classes_match_the_table():
    assert (errors.EXIT_OK, errors.EXIT_RUNTIME, errors.EXIT_USAGE, errors.EXIT_DATA, errors.EXIT_GATE,
            errors.EXIT_MODEL, errors.EXIT_INTERRUPTED, errors.EXIT_PIPE_CLOSED) == (0, 1, 2, 3, 4, 5, 130, 141)
    constants = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert sorted(constants.values()) == sorted(readme_exit_codes())  # no undocumented code, none missing
    assert {cls.__name__: cls.exit_code for cls in (
        errors.LlmctlError, errors.RecipeError, errors.UsageError, errors.DataError, errors.GateFailed,
        errors.ModelError, errors.TrainingError, errors.Interrupted)} == {
        "LlmctlError": 1, "RecipeError": 2, "UsageError": 2, "DataError": 3, "GateFailed": 4, "ModelError": 5,
        "TrainingError": 1, "Interrupted": 130}


@pytest.fixture(scope="module")
def help_codes() -> dict[int, str]:
    result = run_cli("--help")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())  # Click wraps the description
    listed = text.split("Exit codes:", 1)[1].split(".", 1)[0]
    return {int(code): meaning.strip() for code, meaning in re.findall(r"(\d+) ([^,]+)", listed)}


def test_help_lists_codes_with_the_readme_meanings(help_codes):
    assert {0, 1, 2, 3, 4, 5, 130} <= set(help_codes)
    assert set(help_codes) <= set(CODES)
    words = {0: "ok", 1: "runtime", 2: "usage", 3: "data", 4: "gate", 5: "model", 130: "interrupted", 141: "pipe"}
    for code, meaning in help_codes.items():
        assert words[code] in meaning, (code, meaning)


def test_help_lists_every_documented_code(help_codes):
    assert set(help_codes) == set(readme_exit_codes())


# -- the codes as the CLI returns them --------------------------------------------------------
def run_raising(tmp_path, exception: str, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`llmctl [flags] finetune r.yaml` through the real entry point (llmctl.cli:main), with
    the first thing finetune calls (load_recipe) raising `exception`."""
    script = textwrap.dedent(f"""
        import sys
        import llmctl.tasks.recipe
        from llmctl import errors

        def load_recipe(*args, **kwargs):
            raise {exception}

        llmctl.tasks.recipe.load_recipe = load_recipe
        sys.argv = ["llmctl", *{list(flags)!r}, "finetune", "r.yaml"]
        from llmctl.cli import main
        main()
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=cli_env({"LLMCTL_DEBUG": None} | (env or {})),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("exception, code", [
    ("errors.LlmctlError('x')", 1), ("errors.TrainingError('x')", 1), ("errors.RecipeError('x')", 2),
    ("errors.UsageError('x')", 2), ("errors.DataError('x')", 3), ("errors.GateFailed('x')", 4),
    ("errors.ModelError('x')", 5), ("errors.Interrupted('x')", 130), ("KeyboardInterrupt()", 130),
    ("BrokenPipeError()", 141),
])
def test_each_error_exits_with_its_documented_code(tmp_path, exception, code):
    proc = run_raising(tmp_path, exception)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if code != 141:  # a closed stdout ends quietly
        assert len(error_lines(proc.stderr)) == 1, proc.stderr


def test_usage_errors_and_success_codes():
    """The exit status of a real process (every other test may run the CLI in-process)."""
    assert run_cli("finetune", "--no-such-flag", subprocess=True).exit_code == 2
    assert run_cli("--version", subprocess=True).exit_code == 0


def test_unexpected_exception_is_one_line_and_exit_1(tmp_path):
    proc = run_raising(tmp_path, "RuntimeError('boom\\nsecond line')")
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == ["error: RuntimeError: boom (unexpected; rerun with --debug for the traceback)"]
    assert "Traceback" not in proc.stderr and "second line" not in proc.stderr


@pytest.mark.parametrize("how", ["--debug", "LLMCTL_DEBUG=1"])
def test_debug_shows_the_traceback_of_an_unexpected_exception(tmp_path, how):
    flags, env = (["--debug"], None) if how == "--debug" else ([], {"LLMCTL_DEBUG": "1"})
    proc = run_raising(tmp_path, "RuntimeError('boom')", *flags, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "in load_recipe" in proc.stderr and "RuntimeError: boom" in proc.stderr  # the frame that raised
    assert len(error_lines(proc.stderr)) == 1, proc.stderr


@pytest.mark.parametrize("how", [None, "--debug", "LLMCTL_DEBUG=1"])
def test_debug_shows_the_traceback_of_a_user_error(tmp_path, how):
    """A real error (no such recipe, exit 2): one line; with --debug / LLMCTL_DEBUG=1 also the traceback."""
    flags = ["--debug"] if how == "--debug" else []
    result = run_cli(*flags, "finetune", str(tmp_path / "missing.yaml"), cwd=tmp_path,
                     env={"LLMCTL_DEBUG": "1" if how == "LLMCTL_DEBUG=1" else None})
    assert result.exit_code == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert "missing.yaml" in line and "not found" in line
    assert ("Traceback (most recent call last)" in result.stderr) == (how is not None), result.stderr
    if how:
        assert "llmctl.errors.RecipeError" in result.stderr
