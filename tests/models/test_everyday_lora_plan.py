"""Issue 27 item 8: `finetune --dry-run` makes the LoRA checks the run makes before training
(target_modules matching no layer: exit 2, as the run) and shows the trainable-parameter count
the run then trains."""

from helpers import ONE_THREAD, error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_OK, EXIT_USAGE


def test_dry_run_refuses_target_modules_that_match_nothing(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run",
                          peft={"r": 4, "target_modules": ["q_proj"]})
    dry = run_cli("finetune", str(recipe), "--dry-run", env=ONE_THREAD)
    real = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert dry.exit_code == real.exit_code == EXIT_USAGE, dry.stderr[-2000:]
    assert error_lines(dry.stderr) == error_lines(real.stderr)
    assert error_lines(dry.stderr)[0].startswith("error: peft.target_modules: 'q_proj' matches no Linear layer of ")
    assert not (tmp_path / "run").exists()


def test_dry_run_shows_the_trainable_parameters_the_run_trains(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run",
                          peft={"r": 4}, train={"max_steps": 1})
    dry = run_cli("finetune", str(recipe), "--dry-run", "--json", env=ONE_THREAD)
    assert dry.exit_code == EXIT_OK, dry.stderr[-2000:]
    plan = dry.json()["plan"]
    text = run_cli("finetune", str(recipe), "--dry-run", env=ONE_THREAD)
    assert (f"plan: LoRA on {', '.join(plan['lora_target_modules'])}: {plan['trainable_parameters']:,} of "
            f"{plan['total_parameters']:,} parameters train") in text.stdout, text.stdout
    real = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert real.exit_code == EXIT_OK, real.stderr[-2000:]
    peft = real.json()["peft"]
    assert (plan["trainable_parameters"], plan["total_parameters"], plan["lora_target_modules"]) == \
        (peft["trainable_parameters"], peft["total_parameters"], peft["target_modules"])
