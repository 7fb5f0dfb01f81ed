"""FSDP: `accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 -m llmctl finetune`
on this CPU (two gloo processes, each holding half of every parameter) trains like one
process, saves a plain model, records the sharding, and resumes bit for bit after kill -9."""

import json
import shutil
import subprocess
import sys

import pytest

from helpers import (REPO, assert_same_weights, cli_env, copy_without_dropout, error_lines, on_free_port, run_cli,
                     sentiment_rows, rewind_to_checkpoint, write_csv, write_recipe)
from test_kill_resume import check_examples, kill_and_resume, reference_run, resumed_step

# Two-process jobs share one xdist worker, one at a time (test_multiprocess.py).
pytestmark = pytest.mark.xdist_group("gloo-port")

FSDP2 = ["-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2", "--num_processes", "2"]


def launch(launcher: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *on_free_port(launcher), "-m", "llmctl", *args], cwd=REPO,
                          env=cli_env({"OMP_NUM_THREADS": "1"}), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    # Without dropout, one process and two shards compute the same gradients up to summation order.
    model = copy_without_dropout(tiny_models["bert"], tmp / "model")
    train = write_csv(tmp / "train.csv", sentiment_rows(44))  # uneven last batch
    valid = write_csv(tmp / "valid.csv", sentiment_rows(13))
    # A test split too: scoring it reloads the best model into the sharded one after training.
    recipe = write_recipe(tmp / "r.yaml", model, train, valid, tmp / "single", train={"epochs": 2},
                          data={"test": str(valid)})
    single = run_cli("finetune", str(recipe), "--json")
    assert single.exit_code == 0, single.stderr
    return tmp, recipe, single.json()


def test_fsdp_trains_like_one_process_and_saves_a_plain_model(setup):
    tmp, recipe, single = setup
    out = tmp / "fsdp"
    proc = launch(FSDP2, "finetune", str(recipe), "--output-dir", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout  # only rank 0 prints the result
    sharded = json.loads(lines[0])
    assert sharded["train"]["num_processes"] == 2
    assert sharded["train"]["samples"] == single["train"]["samples"]
    assert sharded["metrics"]["loss"] == pytest.approx(single["metrics"]["loss"], abs=1e-4)
    assert sharded["metrics"]["accuracy"] == single["metrics"]["accuracy"]
    assert sharded["test_metrics"] == pytest.approx(sharded["metrics"], abs=1e-6)  # test split = validation

    env = json.loads((out / "environment.json").read_text())
    assert env["distributed_type"] == "FSDP" and env["fsdp"]["version"] == 2
    assert "CPU" in env["fsdp"]["note"] and env["cpu_speedups"] == [] and "FSDP" in env["cpu_speedups_off"]

    # model/ is a whole, plain checkpoint: transformers loads it alone, every weight present...
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(out / "model")
    reference = AutoModelForSequenceClassification.from_pretrained(tmp / "single" / "model")
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    # ...and it is the model the run reported on: evaluating it in one process gives its metrics.
    again = run_cli("eval", str(out), "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["metrics"] == pytest.approx(sharded["metrics"], abs=1e-6)


def test_fsdp_causal_lm_with_tied_embeddings(tiny_models, tmp_path):
    """Llama ties its output layer to the input embeddings: the gathered state holds one
    tensor under two names, which the saved model and the checkpoints must both survive."""
    from test_causal_lm import PAIRS, lm_recipe, pair_rows, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", pair_rows(32))
    valid = write_jsonl(tmp_path / "valid.jsonl", pair_rows(10))
    recipe = lm_recipe(tmp_path / "lm.yaml", tiny_models["llama"], train, valid, tmp_path / "lm", data=PAIRS,
                       train_cfg={"epochs": 1})
    proc = launch(FSDP2, "finetune", str(recipe), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads(proc.stdout)
    again = run_cli("eval", str(tmp_path / "lm"), "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["metrics"]["loss"] == pytest.approx(trained["metrics"]["loss"], abs=1e-6)
    generated = run_cli("generate", str(tmp_path / "lm"), "Review: i loved the story", "--max-new-tokens", "2",
                        "--json")
    assert generated.exit_code == 0, generated.stderr
    assert generated.json()["stats"]["new_tokens"] == 2


@pytest.fixture(scope="module")
def kill_data(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp-kill")
    shutil.copytree(tiny_models["bert"], tmp / "model")  # dropout on: the RNG states must resume too
    return tmp, write_csv(tmp / "train42.csv", sentiment_rows(42))


@pytest.mark.slow  # 86 s on 2 AVX2 cores; by default FSDP resume is covered bitwise by the LoRA case below
def test_fsdp_sigkill_and_resume_is_bitwise(kill_data):
    tmp, train = kill_data
    recipe, ref_trace = reference_run(tmp, "reference", train, launcher=FSDP2)
    assert {r["rank"] for r in ref_trace} == {0, 1}
    _, killed, resumed_err, resumed = kill_and_resume(
        tmp, recipe, "killed", lambda line: "llmctl-fault: paused" in line, launcher=FSDP2, fault="pause@8")
    assert resumed_step(resumed_err) == 5  # checkpoints every 5 steps
    check_examples(ref_trace, killed, resumed, 5)
    assert_same_weights(tmp / "reference", tmp / "killed")

    # Continuing it for more steps with plain data parallelism is refused: its checkpoint
    # holds optimizer state keyed by parameter name, which DDP cannot take. One line says so.
    ddp = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    plain = launch(ddp, "finetune", str(recipe), "--output-dir", str(tmp / "killed"), "--force-resume",
                   "--set", "train.max_steps=25")
    assert plain.returncode != 0
    assert set(error_lines(plain.stderr)) == {
        f"error: Checkpoint {tmp / 'killed' / 'checkpoints' / 'step-0000022'} was written with FSDP2; "
        "this run is without FSDP. Resume with the same `accelerate launch` settings it was written with."
    }, plain.stderr[-3000:]


def test_fsdp1_on_cpu_is_refused_with_the_fix(setup):
    tmp, recipe, _ = setup
    launcher = ["-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes", "2"]  # FSDP1: the default
    proc = launch(launcher, "finetune", str(recipe), "--output-dir", str(tmp / "fsdp1"))
    assert proc.returncode != 0
    assert "error: FSDP version 1 does not run on CPU" in proc.stderr
    assert "Add --fsdp_version 2 to `accelerate launch`" in proc.stderr
    assert not (tmp / "fsdp1").exists()  # refused before the run directory is made


def test_lora_under_fsdp_saves_the_adapter_and_resumes_bitwise(setup, tmp_path):
    """LoRA sharded over two processes: the adapter (and the head trained in full) is gathered
    from the shards into model/, `llmctl eval` scores it as the run did, checkpoints hold only
    what trains, and resuming from one ends with the same adapter bit for bit."""
    from safetensors.torch import load_file

    tmp, recipe, _ = setup
    lora = tmp_path / "lora.yaml"
    lora.write_text(recipe.read_text() + "peft:\n  r: 4\n")
    sets = ["--set", "train.save_every=2", "--set", "train.keep_checkpoints=20"]
    proc = launch(FSDP2, "finetune", str(lora), "--output-dir", str(tmp_path / "full"), "--json", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert 0 < result["peft"]["trainable_parameters"] < result["peft"]["total_parameters"] / 2
    assert result["test_metrics"] == pytest.approx(result["metrics"], abs=1e-6)  # the saved adapter, reloaded
    model_dir = tmp_path / "full" / "model"
    assert (model_dir / "adapter_model.safetensors").is_file() and not (model_dir / "model.safetensors").exists()
    adapter = load_file(str(model_dir / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in adapter.items())  # trained, not the zero start
    assert any("classifier" in k for k in adapter)  # the head travels with it
    again = run_cli("eval", str(tmp_path / "full"), "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["metrics"] == pytest.approx(result["metrics"], abs=1e-5)

    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000004"
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert saved and all("lora_" in k or "modules_to_save" in k for k in saved), sorted(saved)[:5]
    resumed = rewind_to_checkpoint(tmp_path / "full", checkpoint, tmp_path / "resumed")
    proc = launch(FSDP2, "finetune", str(lora), "--output-dir", str(resumed), "--resume", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = load_file(str(resumed / "model" / "adapter_model.safetensors"))
    assert adapter.keys() == again.keys()
    for key in adapter:
        assert (adapter[key] == again[key]).all(), key
