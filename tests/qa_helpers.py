"""SQuAD-format data written by the QA tests: small, deterministic, in the tiny tokenizers' vocabulary."""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers import write_jsonl  # noqa: F401  (QA tests import it from here too)
from tiny_models import JOBS, ORGS, PEOPLE, PLACES, SURNAMES


def make_articles(n_articles: int = 2, paragraphs: int = 3, people: int = 4, seed: int = 0,
                  unanswerable: int = 0) -> list[dict]:
    """Official-layout articles. Each paragraph tells about a few people; each person gives two
    answerable questions (birthplace, job). `unanswerable` adds v2 questions per paragraph
    about people who are not in it."""
    rng = random.Random(seed)
    articles, qid = [], 0
    for a in range(n_articles):
        paras = []
        for _ in range(paragraphs):
            context, qas = "", []
            names = rng.sample([f"{p} {s}" for p in PEOPLE for s in SURNAMES], people + unanswerable)
            for name in names[:people]:
                place, later, job = rng.choice(PLACES), rng.choice(PLACES), rng.choice(JOBS)
                sentence = f"{name} was born in {place} and later moved to {later} to become a {job}. "
                at = len(context)
                context += sentence
                qas.append({"id": f"q{qid}", "question": f"Where was {name} born?",
                            "answers": [{"text": place, "answer_start": at + sentence.index(place)}],
                            "is_impossible": False})
                qas.append({"id": f"q{qid + 1}", "question": f"What did {name} become?",
                            "answers": [{"text": job, "answer_start": at + sentence.rindex(job)}],
                            "is_impossible": False})
                qid += 2
                context += f"{rng.choice(ORGS)} opened an office in {rng.choice(PLACES)}. "
            for name in names[people:]:
                qas.append({"id": f"q{qid}", "question": f"Where was {name} born?", "answers": [],
                            "plausible_answers": [], "is_impossible": True})
                qid += 1
            paras.append({"context": context.strip(), "qas": qas})
        articles.append({"title": f"Article {a}", "paragraphs": paras})
    return articles


def write_squad(path: Path, articles: list[dict], version: str = "1.1") -> Path:
    path.write_text(json.dumps({"version": version, "data": articles}))
    return path


def flat_rows(articles: list[dict]) -> list[dict]:
    """The Hub / jsonl layout: one row per question, answers as {text: [...], answer_start: [...]}."""
    rows = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append({"id": qa["id"], "title": article["title"], "context": paragraph["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return rows


def qa_recipe(path: Path, model: Path, train_file: Path, valid_file: Path | None, output_dir: Path, **extra) -> Path:
    """A small QA recipe; `extra` adds to sections, e.g. data={...}, train={...}."""
    import yaml

    recipe = {
        "task": "qa",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(train_file), "validation": str(valid_file) if valid_file else None,
                 "max_length": 48, "doc_stride": 16, "max_answer_length": 8},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-3,
                  "precision": "fp32", "logging_steps": 1},
        "output_dir": str(output_dir),
    }
    for section, values in extra.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path
