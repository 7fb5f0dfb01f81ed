"""What a user gets from `pip install llmctl`: the wheel carries the recipes and the version.

The wheel is built from a copy of the source (no build/ or egg-info left in the checkout, none
shared between workers), installed into a fresh virtualenv outside the repository whose
site-packages sees the test interpreter's (torch and co. come from there, llmctl only from the
wheel), and its `llmctl` script is run from a folder outside the repository, with no
PYTHONPATH, so nothing can be found through the checkout.
"""

import os
import re
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers import REPO, sentiment_rows, write_csv

RECIPES = REPO / "llmctl" / "recipes"
RECIPE = "classification/sst2-minilm-local"


def declared_version() -> str:
    project = (REPO / "pyproject.toml").read_text().split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"', project, flags=re.M).group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `llmctl` script of a wheel built from this checkout and installed in a fresh venv."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "llmctl", source / "llmctl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(root / "wheels"), str(source)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    # No deprecation banner from the build (issue 27 item 14: `license = { text = ... }` printed one).
    assert "deprecated" not in build.stdout + build.stderr, build.stdout + build.stderr
    (wheel,) = (root / "wheels").glob("llmctl-*.whl")

    env_dir = root / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The test interpreter may itself be a venv, whose packages --system-site-packages does not
    # reach: a .pth line appends its site-packages after the new venv's own, so the installed
    # llmctl comes first and the dependencies are found. A plain path line runs none of that
    # folder's own .pth files, so an editable llmctl installed there stays out of sight.
    (Path(purelib) / "_llmctl_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return env_dir / "bin" / "llmctl"


@pytest.fixture()
def outside(tmp_path) -> Path:
    """A working folder outside the repository."""
    assert REPO not in tmp_path.parents
    return tmp_path


def run_installed(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMCTL_RECIPES")}
    return subprocess.run([str(script), *args], cwd=cwd, env=env | {"HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=300)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, outside):
    python = installed.parent / "python"
    where = subprocess.run([str(python), "-c", "import llmctl; print(llmctl.__file__)"], cwd=outside,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed.parents[1]), where


def test_version_is_the_declared_one(installed, outside):
    result = run_installed(installed, "--version", cwd=outside)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"llmctl {declared_version()}"


def test_recipes_list_and_show_from_the_wheel(installed, outside):
    listed = run_installed(installed, "recipes", "list", cwd=outside)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == sorted(p.relative_to(RECIPES).with_suffix("").as_posix() for p in RECIPES.rglob("*.yaml"))
    assert f"{RECIPE}  llmctl finetune {RECIPE} " in listed.stdout
    shown = run_installed(installed, "recipes", "show", RECIPE, cwd=outside)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (RECIPES / f"{RECIPE}.yaml").read_text()


def test_finetune_a_shipped_recipe_dry_run_from_the_wheel(installed, outside, tiny_models):
    rows = sentiment_rows(8)
    write_csv(outside / "train.tsv", rows, delimiter="\t")
    write_csv(outside / "validation.tsv", rows, delimiter="\t")
    result = run_installed(installed, "finetune", RECIPE, "--model", str(tiny_models["bert"]), "--dry-run",
                           "--set", "data.train=train.tsv", "--set", "data.validation=validation.tsv", cwd=outside)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout and "dry run: nothing trained" in result.stdout, result.stdout
    assert not (outside / "runs").exists()  # a dry run writes nothing
