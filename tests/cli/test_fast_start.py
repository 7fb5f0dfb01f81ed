"""`llmctl --help` and `llmctl recipes list` must not import the heavy ML libraries."""

import subprocess
import sys

import pytest

from helpers import REPO

HEAVY = ("torch", "transformers", "datasets", "accelerate", "evaluate")
PROBE = """
import sys
sys.argv = ["llmctl", *{args!r}]
from llmctl.cli import main
try:
    main()
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["recipes", "list"], ["finetune", "--help"]])
def test_no_heavy_imports(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:", out
