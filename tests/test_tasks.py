"""Task corpora: the built-in tasks (sizes, determinism, cut from evaluation blocks only, distractors) and task files
(jsonl, csv, parquet alike; fields, tasks, ids), and every bad task file in one line through `python launch.py`."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mmc.data import builtin_blocks, is_eval_block
from mmc.errors import MMCError
from mmc.tasks import (CONTEXT_CHARS, ChoicesBuiltinDataset, ChoicesFilesDataset, load_choices_builtin,
                       load_choices_files, load_items)
from test_launch import launch
from test_realisable_runs import one_line_error

TASK_DOMAINS = {"prose_word_order": "prose", "docstring_word_order": "docstrings", "code_word_order": "code"}


@pytest.fixture(scope="module")
def builtin_items():
    return load_choices_builtin(ChoicesBuiltinDataset(max_items=None))


def test_builtin_tasks_are_large_deterministic_and_cut_from_evaluation_blocks(builtin_items):
    items = builtin_items
    sizes = Counter(items.domains)
    assert set(sizes) == set(TASK_DOMAINS) and min(sizes.values()) >= 500
    again = load_choices_builtin(ChoicesBuiltinDataset(max_items=None))
    assert (again.ids, again.choices, again.gold.tolist()) == (items.ids, items.choices, items.gold.tolist())
    other = load_choices_builtin(ChoicesBuiltinDataset(max_items=None, seed=1))
    assert other.choices != items.choices
    assert len(set(items.ids)) == len(items)
    evaluation = {d: [b for b in blocks if is_eval_block(b)] for d, blocks in builtin_blocks().items()}
    rng = np.random.default_rng(0)
    for x in rng.choice(len(items), 300, replace=False):
        context, choices, gold = items.contexts[x], items.choices[x], items.gold[x]
        domain = TASK_DOMAINS[items.domains[x]]
        assert len(choices) == 4 == len(set(choices)) and 0 < len(context) <= CONTEXT_CHARS
        # the context and its right continuation stand together in an evaluation block of the task's domain
        assert any(context + choices[gold] in block for block in evaluation[domain])
    assert items.delimiter == "" and all(c + cont for c, cont in items.pairs())


def test_builtin_answers_are_spread_over_positions_and_lengths(builtin_items):
    items = load_items(ChoicesBuiltinDataset())  # the default: 500 items per task
    assert Counter(items.domains) == {t: 500 for t in TASK_DOMAINS}
    for task in TASK_DOMAINS:
        gold = items.gold[np.asarray(items.domains) == task]
        assert np.bincount(gold, minlength=4).min() > 500 / 4 * 0.7  # the right choice at any position
    # every choice orders the same words with the same whitespace: length and letters give nothing away
    for context, choices in zip(items.contexts[:200], items.choices[:200]):
        assert len({len(c.encode()) for c in choices}) == 1
        assert len({tuple(sorted(c.split())) for c in choices}) == 1
        assert len({re.sub(r"\S+", "w", c) for c in choices}) == 1  # the whitespace between the words in place


ITEMS = [
    {"context": "The capital of France is", "choices": ["Paris", "Rome"], "gold": 0},
    {"context": "2 + 2 =", "choices": ["3", "4", "5"], "gold": 1},
    {"context": "Water boils at", "choices": ["100 C", "0 C", "50 C", "10 C"], "gold": 0},
]


def write_items(path, rows, suffix):
    frame = pd.DataFrame(rows)
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".csv":
        frame.assign(choices=[json.dumps(r["choices"]) for r in rows]).to_csv(path, index=False)
    else:
        frame.to_parquet(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_task_files_of_every_format_give_the_same_items(tmp_path, suffix):
    path = tmp_path / f"facts{suffix}"
    write_items(path, ITEMS, suffix)
    items = load_choices_files(ChoicesFilesDataset(path=str(path)))
    assert items.ids == ["facts/0", "facts/1", "facts/2"] and items.domains == ["facts"] * 3
    assert items.contexts == [r["context"] for r in ITEMS] and items.choices == [r["choices"] for r in ITEMS]
    assert items.gold.tolist() == [0, 1, 0] and items.n_choices.tolist() == [2, 3, 4]
    assert items.pairs()[:2] == [("The capital of France is", " Paris"), ("The capital of France is", " Rome")]
    np.testing.assert_array_equal(items.choice_bytes[1], [1, 1, 1, 0])


def test_task_fields_tasks_ids_and_sampling_are_configurable(tmp_path):
    (tmp_path / "sub").mkdir()
    renamed = [{"q": r["context"], "opts": r["choices"], "label": r["gold"], "key": f"k{i}"} for i, r in enumerate(ITEMS)]
    write_items(tmp_path / "a.jsonl", renamed, ".jsonl")
    write_items(tmp_path / "sub" / "b.jsonl", renamed[:2], ".jsonl")
    cfg = dict(path=str(tmp_path), context_field="q", choices_field="opts", gold_field="label")
    items = load_choices_files(ChoicesFilesDataset(**cfg))
    assert items.domains == ["a"] * 3 + ["sub/b"] * 2 and items.ids[3] == "sub/b/0"
    with pytest.raises(MMCError, match="item id 'k0' occurs twice"):
        load_choices_files(ChoicesFilesDataset(**cfg, id_field="key"))
    sampled = load_items(ChoicesFilesDataset(**cfg, max_items=1, seed=3))
    assert Counter(sampled.domains) == {"a": 1, "sub/b": 1}
    assert load_choices_files(ChoicesFilesDataset(**cfg, delimiter="")).pairs()[0] == (ITEMS[0]["context"], "Paris")


@pytest.mark.parametrize("rows, expected", [
    ([{"context": "x", "choices": ["a", "b"], "gold": 1}, {"context": "y", "choices": [], "gold": 0}],
     "item 1 has no choices"),
    ([{"context": "x", "choices": ["a"], "gold": 0}], "item 0 has 1 choice; a multiple-choice item needs two"),
    ([{"context": "x", "choices": ["a", "b"], "gold": 2}], "item 0: gold 2 is out of range for its 2 choices"),
    ([{"context": "x", "choices": ["a", "b"], "gold": "b"}], "item 0: gold 'b' is not an integer index"),
    ([{"context": "x", "choices": 5, "gold": 0}], "item 0: field 'choices' is not a list of texts"),
    ([{"context": "x", "gold": 0}], "item 0 has no field 'choices'"),
])
def test_bad_items_fail_in_one_line_naming_the_file_and_the_item(tmp_path, rows, expected):
    path = tmp_path / "task.jsonl"
    write_items(path, rows, ".jsonl")
    with pytest.raises(MMCError, match=expected) as error:
        load_choices_files(ChoicesFilesDataset(path=str(path)))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_bad_csv_cell_and_json_line_fail_in_one_line(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text('context,choices,gold\nx,"[""a"", ""b""]",0\ny,not a list,0\n')
    with pytest.raises(MMCError, match="t.csv item 1: field 'choices' holds 'not a list', not a JSON list"):
        load_choices_files(ChoicesFilesDataset(path=str(csv)))
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"context": "x", "choices": ["a", "b"], "gold": 0}\n{"context": \n')
    with pytest.raises(MMCError, match="t.jsonl:2 is not valid JSON"):
        load_choices_files(ChoicesFilesDataset(path=str(jsonl)))
    binary = tmp_path / "b.parquet"
    binary.write_bytes(b"\x00\x01 not parquet")
    with pytest.raises(MMCError, match="b.parquet is not a readable parquet file"):
        load_choices_files(ChoicesFilesDataset(path=str(binary)))


@pytest.mark.parametrize("content, expected", [
    ('{"context": "x", "choices": ["a", "b"], "gold": 0}\n{"context": "y", "choices": [], "gold": 0}\n',
     "task.jsonl item 1 has no choices"),
    ('{"context": "x", "choices": ["a", "b"], "gold": 5}\n', "task.jsonl item 0: gold 5 is out of range"),
    ('{"context": "x", "choices": ["a", "b"]}\n', "task.jsonl item 0 has no field 'gold'"),
    ("\n", "task.jsonl holds no items"),
])
def test_bad_task_files_fail_in_one_line_on_the_command_line(tmp_path, content, expected):
    path = tmp_path / "task.jsonl"
    path.write_text(content)
    proc = launch(tmp_path, "dataset=choices_files", f"dataset.path={path}", check=False)
    one_line_error(proc, expected)


@pytest.mark.parametrize("overrides, expected", [
    (["dataset=choices_builtin", "dataset.n_choices=1"], "dataset.n_choices=1; use 2 to 24"),
    (["dataset=choices_builtin", "dataset.n_choices=25"], "dataset.n_choices=25; use 2 to 24"),
    (["dataset=choices_builtin", "dataset.max_items=0"], "dataset.max_items=0"),
    (["dataset=choices_builtin", "dataset.length_norm=chars"], "dataset.length_norm='chars' is not one of none, bytes"),
    (["dataset=choices_files", "dataset.path={task}", "ensemble=knn_router"],
     "ensemble=knn_router does not apply to multiple-choice items"),
    (["dataset=choices_files"], "dataset.path"),
])
def test_bad_task_config_fails_in_one_line(tmp_path, overrides, expected):
    task = tmp_path / "task.jsonl"
    write_items(task, ITEMS, ".jsonl")
    one_line_error(launch(tmp_path, *(o.format(task=task) for o in overrides), check=False), expected)


def test_a_task_corpus_and_its_options_are_checked_before_mlflow(tmp_path):
    """mmc.job.load_inputs (what a job does before MLflow loads): the items load, and options that cannot apply to
    them fail in one line there."""
    from mmc.job import load_inputs
    from test_launch import composed_config

    path = tmp_path / "task.jsonl"
    write_items(path, ITEMS, ".jsonl")
    inputs = load_inputs(composed_config("dataset=choices_files", f"dataset.path={path}", "pool=tiny_random"))
    assert inputs.corpus.choices == [r["choices"] for r in ITEMS] and inputs.texts is None and inputs.lm is None
    for override, expected in [("scoring.token_losses=true", "token losses of texts, and a task corpus has none"),
                               ("ensemble=segment_oracle", "ensemble=segment_oracle does not apply to multiple-choice")]:
        with pytest.raises(MMCError, match=expected):
            load_inputs(composed_config("dataset=choices_files", f"dataset.path={path}", override))
