"""Files llmctl did not write (issue 25, items 5, 6, 10, 12, 13, 18), through the real CLI on one
tiny trained run copied per case: hostile run files and symlinks are FIXTURES that every reader
of a run directory is run against (RUN_READERS), so a new command that reads runs inherits them
by being added there. Each case asserts the exit code, the exact one-line message, no traceback,
and that every file present before is byte-identical after."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import ONE_THREAD, error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_OK, EXIT_USAGE

SECRET = "hf_SECRETtokenDoNotLeak0123456789"
FIX = "Restore the file llmctl wrote, or remove the run."


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    """One tiny classification run (and its feature-cache entry), trained once for the module."""
    folder = tmp_path_factory.mktemp("foreign")
    train = write_csv(folder / "train.csv", sentiment_rows(24))
    valid = write_csv(folder / "valid.csv", sentiment_rows(8))
    recipe = write_recipe(folder / "r.yaml", tiny_models["bert"], train, valid, folder / "run",
                          train={"epochs": 1, "save_every": 1000})
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(folder / "cache")}
    done = run_cli("finetune", str(recipe), "--json", env=env)
    assert done.exit_code == EXIT_OK, done.stderr[-3000:]
    (folder / "inputs.txt").write_text("a great film\n")
    return folder


def copy_run(trained: Path, dest: Path) -> Path:
    shutil.copytree(trained / "run", dest, symlinks=True)
    return dest


def snapshot(*roots: Path) -> dict:
    """Every entry under `roots` (links not followed): its bytes, or where a link points."""
    found = {}
    for root in roots:
        if root.is_file() or root.is_symlink():
            found[str(root)] = os.readlink(root) if root.is_symlink() else root.read_bytes()
            continue
        for top, dirs, names in os.walk(root):
            for name in dirs + names:
                path = Path(top) / name
                if path.is_symlink():
                    found[str(path)] = ("link", os.readlink(path))
                elif path.is_file():
                    found[str(path)] = path.read_bytes()
    return found


def assert_unchanged(before: dict, *roots: Path) -> None:
    after = snapshot(*roots)
    changed = [path for path, content in before.items() if after.get(path) != content]
    assert not changed, f"changed or removed: {changed}"


def assert_clean(result) -> None:
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr[-3000:]


# -- the fixtures: hostile run files (item 18, 12) and a link out of the run (item 13) ----------
def _edit_json(name: str, **values):
    def corrupt(run: Path) -> None:
        path = run / name
        path.write_text(json.dumps(json.loads(path.read_text()) | values))
    return corrupt


def _edit_recipe(**values):
    def corrupt(run: Path) -> None:
        path = run / "recipe.yaml"
        path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | values))
    return corrupt


def laughs(levels: int = 9) -> str:
    lines = ["task: classification", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _link_recipe(run: Path) -> None:
    secret = run.parent / "secret.txt"
    secret.write_text(f"task: {SECRET}\n")
    (run / "recipe.yaml").unlink()
    (run / "recipe.yaml").symlink_to(secret)


# id -> (corrupt the run in place, the file named, the one-line error after "FILE")
CORRUPTIONS = {
    "metrics-test_metrics-list": (_edit_json("metrics.json", test_metrics=[1]), "metrics.json",
                                  f": test_metrics is a list, where llmctl writes a mapping. {FIX}"),
    "recipe-task-list": (_edit_recipe(task=["a", "b"]), "recipe.yaml",
                         f": task is a list, where llmctl writes a string. {FIX}"),
    "recipe-data-int": (_edit_recipe(data=5), "recipe.yaml", f": data is an integer, where llmctl writes a mapping. {FIX}"),
    "llmctl-json-data-int": (_edit_json("model/llmctl.json", data=7), "model/llmctl.json",
                             f": data is an integer, where llmctl writes a mapping. {FIX}"),
    "environment-packages-list": (_edit_json("environment.json", packages=[1]), "environment.json",
                                  f": packages is a list, where llmctl writes a mapping. {FIX}"),
    "recipe-alias-bomb": (lambda run: (run / "recipe.yaml").write_text(laughs()), "recipe.yaml",
                          ": refusing this YAML: its anchors and aliases expand to more than 100,000 values "
                          "(a 'billion laughs' file?). Restore the recipe llmctl wrote, or remove the run."),
    "recipe-symlink-out": (_link_recipe, "recipe.yaml",
                           " is a symbolic link; llmctl reads only regular files inside a run. "
                           "Replace it with the file itself."),
}


# Every command that reads a run directory: (run, good run, scratch folder, fixture folder) -> argv.
RUN_READERS = {
    "runs list": lambda run, good, tmp, t: ["runs", "list", str(run.parent)],
    "runs show": lambda run, good, tmp, t: ["runs", "show", str(run)],
    "runs compare": lambda run, good, tmp, t: ["runs", "compare", str(run), str(good)],
    "report": lambda run, good, tmp, t: ["report", str(run), "--max-examples", "0", "-o", str(tmp / "r.html")],
    "eval": lambda run, good, tmp, t: ["eval", str(run)],
    "predict": lambda run, good, tmp, t: ["predict", str(run), "--input", str(t / "inputs.txt")],
    "export": lambda run, good, tmp, t: ["export", str(run), "--output", str(tmp / "exported")],
    "push --dry-run": lambda run, good, tmp, t: ["push", str(run), "--repo-id", "me/x", "--dry-run"],
}


@pytest.mark.parametrize("reader", RUN_READERS)
@pytest.mark.parametrize("case", CORRUPTIONS)
def test_every_run_reader_refuses_a_hostile_run_file_naming_it(trained, tmp_path, case, reader):
    """Lists skip the bad run with a warning (exit 0); every other reader exits 2 naming the file."""
    corrupt, name, message = CORRUPTIONS[case]
    good, run = copy_run(trained, tmp_path / "runs" / "good"), copy_run(trained, tmp_path / "runs" / "bad")
    corrupt(run)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path / "runs", tmp_path / "out")
    result = run_cli(*RUN_READERS[reader](run, good, tmp_path / "out", trained))
    assert_clean(result)
    if reader == "runs list":
        assert result.exit_code == EXIT_OK, result.stderr
        assert f"warning: skipped run {run}: {run / name}{message}" in result.stderr.splitlines()
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["run", "good"]
    else:
        assert result.exit_code == EXIT_USAGE, result.stderr
        assert error_lines(result.stderr) == [f"error: {run / name}{message}"]
        assert SECRET not in result.stdout + result.stderr
    assert_unchanged(before, tmp_path / "runs", tmp_path / "out")
    assert not (tmp_path / "out" / "exported").exists()


def _hostile_links(run: Path) -> None:
    """Links out of the run where readers look (a picture, a model file, a checkpoint, the lock) and a
    secret-named file."""
    secret = run.parent / "secret.txt"
    secret.write_text(SECRET)
    (run / "zero.png").symlink_to("/dev/zero")
    (run / "leak.png").symlink_to(secret)
    (run / "model" / "notes.txt").symlink_to(secret)
    (run / "model" / "token").write_text(SECRET)
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "step-0999999").symlink_to("/")  # sized by `runs show`: never walked
    (run / "run.lock").unlink(missing_ok=True)
    (run / "run.lock").symlink_to(secret)


@pytest.mark.parametrize("reader", RUN_READERS)
def test_every_run_reader_never_follows_a_link_out_of_the_run(trained, tmp_path, reader):
    good, run = copy_run(trained, tmp_path / "runs" / "good"), copy_run(trained, tmp_path / "runs" / "bad")
    _hostile_links(run)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path / "runs", tmp_path / "out")
    result = run_cli(*RUN_READERS[reader](run, good, tmp_path / "out", trained), env=ONE_THREAD, timeout=300)
    assert_clean(result)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    shown = result.stdout + result.stderr + "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*")
                                                    if p.is_file() and not p.is_symlink())
    assert SECRET not in shown and base64.b64encode(SECRET.encode()).decode()[:20] not in shown
    assert_unchanged(before, tmp_path / "runs", tmp_path / "out")


# -- item 13: what report and push say about what they left out ---------------------------------
def test_report_and_push_skip_links_and_secrets_and_say_so(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    _hostile_links(run)
    before = snapshot(tmp_path)
    page = run_cli("report", str(run), "--max-examples", "0")
    assert page.exit_code == EXIT_OK, page.stderr
    link = "is a symbolic link; llmctl reads only regular files inside a run."
    for png in ("leak.png", "zero.png"):
        assert f"left out picture {png}: {run / png} {link}" in page.stderr.splitlines()
    html = (run / "report.html").read_text()
    assert base64.b64encode(SECRET.encode()).decode()[:20] not in html and SECRET not in html
    assert "curves.png" in html  # the run's own picture is still there
    push = run_cli("push", str(run), "--repo-id", "me/x", "--dry-run")
    assert push.exit_code == EXIT_OK, push.stderr
    assert [line for line in push.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: not uploaded: notes.txt (a symbolic link (to {run.parent / 'secret.txt'}))",
        "warning: not uploaded: token (its name looks like a secret (token, key or credentials))"]
    listed = [line.split()[-1] for line in push.stdout.splitlines()[1:]]
    assert "model.safetensors" in listed and "token" not in listed and "notes.txt" not in listed
    assert_unchanged(before, tmp_path)


# -- item 18: one malformed run does not hide the others ----------------------------------------
def test_runs_list_skips_each_malformed_run_naming_it_and_lists_the_rest(trained, tmp_path):
    root = tmp_path / "runs"
    copy_run(trained, root / "good")
    for case, (corrupt, _, _) in CORRUPTIONS.items():
        corrupt(copy_run(trained, root / case))
    before = snapshot(root)
    result = run_cli("runs", "list", str(root), "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    assert_clean(result)
    assert [row["name"] for row in result.json()] == ["good"]
    warnings = result.stderr.splitlines()
    for case, (_, name, message) in CORRUPTIONS.items():
        assert f"warning: skipped run {root / case}: {root / case / name}{message}" in warnings
    assert len(warnings) == len(CORRUPTIONS)
    assert_unchanged(before, root)


# -- item 12: an alias bomb in a run's recipe is refused at once --------------------------------
def test_alias_bomb_in_a_runs_recipe_is_refused_quickly_by_runs_show(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    (run / "recipe.yaml").write_text(laughs(12))  # 9**13 strings once expanded
    before = snapshot(tmp_path)
    result = run_cli("runs", "show", str(run))
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [
        f"error: {run / 'recipe.yaml'}: refusing this YAML: its anchors and aliases expand to more than 100,000 "
        "values (a 'billion laughs' file?). Restore the recipe llmctl wrote, or remove the run."]
    assert_unchanged(before, tmp_path)


# -- item 6: export never deletes a .DIR.partial it did not make --------------------------------
def test_export_refuses_a_foreign_partial_folder_and_replaces_only_its_own(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    theirs = tmp_path / ".out.partial"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("three years of work\n")
    before = snapshot(tmp_path)
    result = run_cli("export", str(run), "--output", str(tmp_path / "out"))
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [
        f"error: {theirs} exists and was not made by llmctl export, so export will not delete it. "
        f"Move or remove {theirs}, or choose another --output."]
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "out").exists()
    # A leftover of an interrupted export (marked when it was made) is llmctl's to replace.
    ours = tmp_path / ".again.partial"
    ours.mkdir()
    (ours / ".llmctl-export-partial").write_text("")
    (ours / "half.safetensors").write_text("x")
    result = run_cli("export", str(run), "--output", str(tmp_path / "again"), env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    assert not ours.exists() and (tmp_path / "again" / "model.safetensors").is_file()
    assert not (tmp_path / "again" / ".llmctl-export-partial").exists()
    assert_unchanged(before, tmp_path)


# -- item 5: cache clear removes only llmctl's entries ------------------------------------------
def test_cache_clear_keeps_folders_it_did_not_write_and_does_not_count_them(trained, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trained / "cache", cache)
    features = cache / "features"
    [entry] = list(features.iterdir())
    interrupted = features / f".tmp-{entry.name}-abc123"  # llmctl's own temp name
    interrupted.mkdir()
    (interrupted / "tokens.npy").write_bytes(b"\0" * 100)
    for folder in ("text_features", ".git"):
        (features / folder).mkdir()
        (features / folder / "manifest.json").write_text('{"mine": true}')
    (features / "notes.txt").write_text("mine\n")
    fake = features / ("0" * 32)  # named like an entry, no llmctl manifest
    fake.mkdir()
    (fake / "data.bin").write_bytes(b"1" * 10)
    keep = snapshot(*(features / n for n in ("text_features", ".git", "notes.txt", "0" * 32)))
    size = sum(p.stat().st_size for p in [*entry.rglob("*"), *interrupted.rglob("*")] if p.is_file())
    result = run_cli("cache", "clear", "--json", env={"LLMCTL_CACHE_DIR": str(cache)})
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.json() == {"removed": 1, "bytes_freed": size, "cache_dir": str(cache)}
    assert not entry.exists() and not interrupted.exists()
    assert_unchanged(keep, features)


# -- item 10 and the cache half of item 18: an entry is used only under its own key ---------------
@pytest.fixture
def cache_setup(trained, tiny_models, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trained / "cache", cache)
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(cache)}

    def finetune(rows: int | None, out: str):
        """The module run's recipe (rows None: its 24 rows, so its cache entry is the one looked up),
        or the same with another training file of `rows` rows."""
        recipe = trained / "r.yaml"
        if rows is not None:
            train = write_csv(tmp_path / f"train{rows}.csv", sentiment_rows(rows))
            recipe = write_recipe(tmp_path / f"r{rows}.yaml", tiny_models["bert"], train, trained / "valid.csv",
                                  tmp_path / out, train={"epochs": 1, "save_every": 1000})
        result = run_cli("finetune", str(recipe), "--json", "--output-dir", str(tmp_path / out), "--max-steps", "1",
                         env=env)
        assert result.exit_code == EXIT_OK, result.stderr[-3000:]
        assert_clean(result)
        return result
    return cache / "features", finetune


def test_a_cache_entry_found_under_another_key_is_rebuilt_not_used(cache_setup):
    features, finetune = cache_setup
    [a] = list(features.iterdir())  # the module run's 24 rows
    first = finetune(16, "b")
    assert first.json()["data"]["cache"] == "miss"
    [b] = [p for p in features.iterdir() if p != a]
    a.rename(features / "swap")
    b.rename(a)
    (features / "swap").rename(b)  # entry folders swapped: b's name now holds a's 24 rows
    result = finetune(16, "c")
    assert result.json()["data"]["cache"] == "miss" and result.json()["data"]["train_rows"] == 16
    assert (f"feature cache entry {b} is corrupt (its manifest records a different key (entry folders renamed or "
            "swapped?)); rebuilding it.") in result.stderr.splitlines()


@pytest.mark.parametrize("manifest", ["null", "[]", '{"key": {}, "rows": 24}'])
def test_a_cache_manifest_that_is_not_llmctls_mapping_is_corrupt_and_rebuilt(cache_setup, manifest):
    features, finetune = cache_setup
    [entry] = list(features.iterdir())
    (entry / "manifest.json").write_text(manifest)
    result = finetune(None, "run")
    assert result.json()["data"]["cache"] == "miss" and result.json()["data"]["train_rows"] == 24
    assert (f"feature cache entry {entry} is corrupt (manifest.json is not the mapping of key and file checksums "
            "llmctl writes); rebuilding it.") in result.stderr.splitlines()
    assert json.loads((entry / "manifest.json").read_text())["files"]
