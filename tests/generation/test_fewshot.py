"""Few-shot zero-shot eval (`zero_shot.num_fewshot: k`): the prompts equal lm-evaluation-harness's
for the same template, choices and seed; the result states k and the seed; taking the examples
from the split being scored, or asking for more examples than the split has, is refused before
any model loads."""

from __future__ import annotations

import csv

import pytest
import yaml

from helpers import error_lines, run_cli
from llmctl.errors import EXIT_DATA, EXIT_USAGE

TEMPLATE = "Review: {sentence}\nSentiment:"
WORDS = {"negative": " negative", "positive": " positive"}


def review_rows(first: int, n: int) -> list[dict]:
    return [{"sentence": f"movie number {i} was {'great' if i % 2 else 'bad'}", "label": ["negative", "positive"][i % 2]}
            for i in range(first, first + n)]


def write(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sentence", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot")
    return {"train": write(root / "train.csv", review_rows(0, 10)),
            "validation": write(root / "validation.csv", review_rows(10, 6)), "root": root}


def recipe_file(path, model, files, **zero_shot):
    recipe = {"task": "classification", "model": {"name_or_path": str(model)},
              "data": {"train": str(files["train"]), "validation": str(files["validation"]),
                       "label_names": ["negative", "positive"]},
              "zero_shot": {"template": TEMPLATE, "verbalizers": WORDS, **zero_shot}}
    path.write_text(f"# llmctl eval {model} --recipe {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def our_prompts(recipe_path, spec):
    from llmctl.generation.zeroshot import add_examples, fill_template
    from llmctl.tasks.base import Labels
    from llmctl.tasks.classification import ClassificationTask
    from llmctl.tasks.recipe import load_recipe

    recipe = load_recipe(str(recipe_path))
    task = ClassificationTask(recipe.data, Labels(("negative", "positive")))
    split = task.load_split("eval", spec)
    prompts = fill_template(TEMPLATE, recipe.data.text_columns, split.texts)
    return add_examples(prompts, task, recipe.zero_shot, recipe.data, spec)


@pytest.mark.parametrize("k,seed", [(3, 1234), (5, 7)])
def test_prompts_equal_lm_evaluation_harness(files, tmp_path, k, seed):
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import ConfigurableTask

    recipe = recipe_file(tmp_path / "r.yaml", "gpt2", files, num_fewshot=k, fewshot_seed=seed)
    prompts, info = our_prompts(recipe, str(files["validation"]))
    assert info["fewshot_seed"] == seed and info["fewshot_split"] == str(files["train"])

    harness = ConfigurableTask(config=dict(
        task="reviews", dataset_path="csv",
        dataset_kwargs={"data_files": {"train": str(files["train"]), "validation": str(files["validation"])}},
        training_split="train", validation_split="validation", fewshot_split="train",
        doc_to_text="Review: {{sentence}}\nSentiment:", doc_to_target="label",
        doc_to_choice=["negative", "positive"], output_type="multiple_choice", num_fewshot=k))
    harness.set_fewshot_seed(seed)
    theirs = [harness.fewshot_context(doc, k) for doc in harness.validation_docs()]
    assert prompts == theirs
    # never the scored row: each prompt's examples are training rows, its own row comes last, once
    for prompt, row in zip(prompts, review_rows(10, 6)):
        assert prompt.count(row["sentence"]) == 1 and prompt.endswith(row["sentence"] + "\nSentiment:")
        assert prompt.count("\n\n") == k


def test_fewshot_result_states_k_and_the_seed(files, tiny_models, tmp_path):
    recipe = recipe_file(tmp_path / "r.yaml", tiny_models["gpt2"], files, num_fewshot=2)
    result = run_cli("eval", str(tiny_models["gpt2"]), "--recipe", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    zero_shot = result.json()["zero_shot"]
    assert zero_shot["num_fewshot"] == 2 and zero_shot["fewshot_seed"] == 1234
    assert zero_shot["fewshot_split"] == str(files["train"])


@pytest.mark.parametrize("case", ["same_split", "too_many"])
def test_fewshot_refusals_before_any_model_loads(case, files, tmp_path):
    missing_model = tmp_path / "no-such-model"  # never reached: the refusal comes first
    if case == "same_split":
        recipe = recipe_file(tmp_path / "r.yaml", missing_model, files, num_fewshot=2,
                             fewshot_split=str(files["validation"]))
        code, line = EXIT_USAGE, (f"error: zero_shot.fewshot_split '{files['validation']}' is the split being scored: "
                                  "its examples would include the answers being scored (leakage). Take the examples "
                                  "from another split (e.g. zero_shot.fewshot_split: train).")
    else:
        recipe = recipe_file(tmp_path / "r.yaml", missing_model, files, num_fewshot=11)
        code, line = EXIT_DATA, (f"error: zero_shot.num_fewshot 11 is more than the 10 example(s) of {files['train']}. "
                                 "Lower zero_shot.num_fewshot or give a larger zero_shot.fewshot_split.")
    result = run_cli("eval", str(missing_model), "--recipe", str(recipe))
    assert result.exit_code == code, result.stderr
    assert error_lines(result.stderr) == [line]
