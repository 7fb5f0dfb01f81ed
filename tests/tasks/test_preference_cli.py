"""task: preference through the real CLI on a tiny GPT-2: a DPO run raises the chosen reward and logs
TRL's metrics; `eval` reports and gates on them; the reference runs once (a second run and eval read
its log-probs from the feature cache); a run killed mid-way resumes to the same weights; bad input is
one line with the documented exit code and leaves no run directory."""

import json
import signal
import subprocess
import sys

import pytest

from helpers import (ONE_THREAD, REPO, assert_same_weights, build_recipe, cli_env, error_lines, eval_log,
                     newest_complete_checkpoint, resumed_from, run_cli)
from llmctl.errors import EXIT_DATA, EXIT_GATE, EXIT_USAGE
from test_preference import preference_rows, write_jsonl

METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected"]
# 24 pairs, batch 4: 6 steps an epoch, 2 epochs; a checkpoint every 3 steps.
TRAIN = {"epochs": 2, "batch_size": 4, "eval_batch_size": 8, "learning_rate": 3e-3, "save_every": 3,
         "keep_checkpoints": 10, "logging_steps": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("preference")
    train = write_jsonl(root / "train.jsonl", preference_rows(24, rejected=" I cannot say"))
    valid = write_jsonl(root / "valid.jsonl", preference_rows(8, rejected=" I cannot say"))
    recipe = build_recipe(root / "dpo.yaml", "preference", tiny_models["gpt2"], root / "run",
                          {"train": str(train), "validation": str(valid), "max_length": 32},
                          train=TRAIN, preference={"method": "dpo", "beta": 0.1})
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(root / "cache")}
    result = run_cli("finetune", str(recipe), "--json", env=env)
    assert result.exit_code == 0, result.stderr[-3000:]
    return {"root": root, "recipe": recipe, "valid": valid, "env": env, "result": result, "run": root / "run"}


def test_a_dpo_run_raises_the_chosen_reward_and_logs_trls_metrics(trained):
    metrics = trained["result"].json()["metrics"]
    assert list(metrics) == METRICS
    first, last = eval_log(trained["run"])
    assert 0 < first["rewards/chosen"] < last["rewards/chosen"]  # 0 at the start: the policy is its reference
    assert last["rewards/margins"] > 0.5 and last["rewards/accuracies"] == 1.0
    log = [json.loads(line) for line in (trained["run"] / "train_log.jsonl").read_text().splitlines()]
    assert set(METRICS[1:]) <= set(log[0])
    assert log[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # step 1: log 2 (dropout off, as in TRL)
    assert log[0]["rewards/chosen"] == pytest.approx(0, abs=1e-5)
    assert [line for line in trained["result"].stderr.splitlines() if line.startswith("reference log-probs")] == [
        line for line in trained["result"].stderr.splitlines() if "computed for" in line]
    assert "reference log-probs: computed for 24 pairs" in trained["result"].stderr


def test_eval_reports_the_rewards_and_gates_on_them(trained):
    result = run_cli("eval", str(trained["run"]), "--data", str(trained["valid"]), "--json",
                     "--fail-under", "rewards/accuracies=1.01", "--fail-under", "rewards/margins=0.5", env=trained["env"])
    assert result.exit_code == EXIT_GATE, result.stderr[-2000:]
    assert result.json()["metrics"] == pytest.approx(trained["result"].json()["metrics"])
    assert result.json()["gates"]["failed"] == ["rewards/accuracies 1.0000 < 1.01"]
    assert error_lines(result.stderr) == ["error: Quality gate failed: rewards/accuracies 1.0000 < 1.01."]
    assert "reference log-probs: 8 pairs from the cache" in result.stderr  # the reference did not run again


def test_a_killed_run_resumes_to_the_same_weights(trained):
    out = trained["root"] / "killed"
    args = [sys.executable, "-m", "llmctl", "finetune", str(trained["recipe"]), "--output-dir", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, env=cli_env(trained["env"] | {"LLMCTL_FAULT": "pause@5"}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("llmctl-fault: paused"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # a second run of the same data and model: the reference log-probs come from the cache
    assert "reference log-probs: 24 pairs from the cache" in "".join(lines)
    assert "computed for" not in "".join(lines)
    checkpoint = newest_complete_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == "step-0000003"
    resumed = run_cli("finetune", str(trained["recipe"]), "--output-dir", str(out), "--resume", "auto",
                      env=trained["env"])
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    assert resumed_from(resumed.stderr) == checkpoint
    assert "computed for" not in resumed.stderr  # the reference log-probs came from the cache
    assert_same_weights(trained["run"], out)
    assert eval_log(out)[-1] == eval_log(trained["run"])[-1]


def test_bad_input_is_one_line_with_its_exit_code_and_no_run_directory(trained, tiny_models):
    root = trained["root"]
    data = {"train": str(write_jsonl(root / "bad.jsonl", [{"prompt": "p", "good": "a", "rejected": "b"}])),
            "validation": None}
    cases = [
        (data, {}, EXIT_DATA, f"error: data.chosen_column: column 'chosen' is not in {root / 'bad.jsonl'}; its "
                              "columns are: prompt, good, rejected."),
        ({"train": str(trained["valid"]), "validation": None}, {"preference": {"beta": -1}}, EXIT_USAGE,
         "preference.beta: must be > 0"),
        ({"train": str(trained["valid"]), "validation": None}, {"preference": {"method": "orpo", "label_smoothing": 0.1}},
         EXIT_USAGE, "preference.label_smoothing smooths DPO's reference-based loss; method orpo has no reference"),
    ]
    for n, (section, extra, code, message) in enumerate(cases):
        out = root / f"bad{n}"
        recipe = build_recipe(root / f"bad{n}.yaml", "preference", tiny_models["gpt2"], out, section, **extra)
        result = run_cli("finetune", str(recipe), env=trained["env"])
        assert result.exit_code == code, result.stderr
        assert len(error_lines(result.stderr)) == 1, result.stderr
        # a data error is its one line; a recipe error lists each key on the line after it, with the file's line
        assert message in (error_lines(result.stderr)[0] if code == EXIT_DATA else result.stderr), result.stderr
        assert not out.exists()
