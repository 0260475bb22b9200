"""Multiple-choice task corpora: items with a context, two or more choices and the index of the right one.

Each item belongs to a task, its domain. A model answers an item with the choice it finds most likely given
the context (mmc.choices). Two dataset kinds build them (registered in mmc.data.DATASETS):
- `choices_files`: .jsonl/.csv/.parquet files of items shaped like lm-evaluation-harness's multiple-choice
  documents: a context, a list of choices and the gold index (field names configurable; a .csv cell holds the
  list as JSON). A choice is scored as `delimiter + choice` after the context, as lm-eval scores
  `target_delimiter + choice` (" " by default). The task is `task_field`, else the file's path under
  `dataset.path` without its suffix.
- `choices_builtin`: three tasks cut from the built-in corpus's evaluation split (blocks the zoo never trains
  on), one per domain: `prose_word_order` (paragraphs of the language reference), `docstring_word_order` and
  `code_word_order` (top-level statements of the standard library). An item is a passage and four choices for
  what follows: its next four words in their true order, and three other orders of the same words (the
  whitespace between them in place), so every choice has the same bytes and only the model's sense of the text
  tells them apart. Contexts are the last CONTEXT_CHARS characters before the cut, from a word's start, and
  continuations at most MAX_ANSWER_CHARS, so that an item fits the zoo's 128-token window even with a byte
  tokenizer. Deterministic given the Python version and the seed. (Distractors taken from other items'
  continuations left the zoo at chance: its tiny models barely use the context, but they know word order.)
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import MISSING

from mmc.errors import MMCError
from mmc.paths import file_provenance
from mmc.registry import check_node, choices

ITEM_SUFFIXES = (".jsonl", ".csv", ".parquet")
LENGTH_NORMS = ("none", "bytes")  # an answer is the argmax of the choices' log-likelihoods, or of them per byte


@dataclass
class ChoicesDataset:
    """Keys of every task corpus: how many items each task keeps and how an answer is picked."""

    kind: str = MISSING  # set by the option: dataset=choices_files, dataset=choices_builtin
    max_items: Optional[int] = None  # per task, drawn with `seed` (original order kept); null: all
    seed: int = 0
    # the predicted choice: argmax of its log-likelihood (none, lm-eval's acc) or of it per byte of the choice
    # (bytes; lm-eval's acc_norm divides by characters)
    length_norm: str = field(default="none", metadata=choices(LENGTH_NORMS))

    def provenance(self) -> tuple[str, str]:
        """(name, source) of the items as the run's MLflow dataset input shows them (see mmc.data)."""
        raise NotImplementedError

    def check(self, path: str) -> None:
        if self.max_items is not None and self.max_items < 1:
            raise MMCError(f"{path}.max_items={self.max_items}; use null (all) or at least 1")


@dataclass
class ChoicesFilesDataset(ChoicesDataset):
    """Items from .jsonl/.csv/.parquet files (see the module docstring)."""

    kind: str = "choices_files"
    path: str = MISSING  # a file or a directory of such files
    context_field: str = "context"
    choices_field: str = "choices"  # a list of strings (.csv: a JSON list)
    gold_field: str = "gold"  # the index of the right choice, from 0
    task_field: Optional[str] = None  # null: the file's path under `path`, without its suffix
    id_field: Optional[str] = None  # null: <task>/<row number from 0>
    delimiter: str = " "  # put between the context and each choice, as lm-eval's target_delimiter

    def provenance(self) -> tuple[str, str]:
        return file_provenance(self.path)


@dataclass
class ChoicesBuiltinDataset(ChoicesDataset):
    """Three tasks from the built-in corpus's evaluation split (see the module docstring)."""

    kind: str = "choices_builtin"
    max_items: Optional[int] = 500
    n_choices: int = 4

    def provenance(self) -> tuple[str, str]:
        return "choices_builtin", sysconfig.get_paths()["stdlib"]

    def check(self, path: str) -> None:
        super().check(path)
        if not 2 <= self.n_choices <= math.factorial(NEXT_WORDS):
            raise MMCError(f"{path}.n_choices={self.n_choices}; use 2 to {math.factorial(NEXT_WORDS)} (the orders of "
                           f"{NEXT_WORDS} words)")


@dataclass
class Items:
    """A task corpus. Choice j of item i is scored as the continuation `delimiter + choices[i][j]` of
    contexts[i]; `gold[i]` indexes the right one; `domains[i]` is the item's task."""

    ids: list[str]
    contexts: list[str]
    choices: list[list[str]]
    gold: np.ndarray  # int64 (I,)
    domains: list[str]
    delimiter: str = ""
    length_norm: str = "none"  # LENGTH_NORMS: how a model's answer is picked (the ChoiceMatrix's)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_choices(self) -> np.ndarray:
        return np.array([len(c) for c in self.choices], dtype=np.int64)

    @property
    def choice_bytes(self) -> np.ndarray:
        """int64 (I, max choices): UTF-8 bytes of each choice as given (without the delimiter, as lm-eval's
        acc_norm counts the choice alone); 0 where an item has fewer choices."""
        out = np.zeros((len(self), max(self.n_choices, default=0)), dtype=np.int64)
        for i, item in enumerate(self.choices):
            out[i, :len(item)] = [len(c.encode("utf-8")) for c in item]
        return out

    @property
    def n_bytes(self) -> np.ndarray:
        """UTF-8 bytes of each item's context and choices."""
        return np.array([len(c.encode("utf-8")) for c in self.contexts], dtype=np.int64) + self.choice_bytes.sum(1)

    @property
    def hash(self) -> str:
        """Hash of the ordered items' contents: two corpora with the same hash hold the same items."""
        digest = hashlib.sha256()
        for context, item, gold in zip(self.contexts, self.choices, self.gold.tolist()):
            digest.update(json.dumps([context, self.delimiter, item, gold]).encode())
        return digest.hexdigest()[:16]

    def pairs(self) -> list[tuple[str, str]]:
        """(context, continuation) of every choice, item by item: what a model scores."""
        return [(c, self.delimiter + choice) for c, item in zip(self.contexts, self.choices) for choice in item]


def is_task_corpus(cfg) -> bool:
    """A dataset option whose items are scored choice by choice (else a corpus of texts, mmc.data)."""
    return isinstance(cfg, ChoicesDataset)


def refuse_token_losses(asked: bool | None) -> None:
    """scoring.token_losses=true on a task corpus: one-line MMCError (null means off for items)."""
    if asked:
        raise MMCError("scoring.token_losses=true keeps the token losses of texts, and a task corpus has none; "
                       "drop the override")


def load_items(cfg: ChoicesDataset) -> Items:
    """The task corpus of `cfg`: its items, at most max_items per task."""
    from mmc.data import DATASETS  # the registry lists this module's kinds beside the text kinds

    check_node(cfg, "dataset")
    items = DATASETS.run(cfg.kind)(cfg)
    return sample_items(items, cfg.max_items, cfg.seed)


def sample_items(items: Items, max_items: int | None, seed: int) -> Items:
    """Up to max_items items of each task, drawn with `seed`, in their original order."""
    domains = np.asarray(items.domains)
    keep = []
    for task in sorted(set(items.domains)):
        where = np.flatnonzero(domains == task)
        if max_items is not None and len(where) > max_items:
            where = np.sort(np.random.default_rng(task_seed(task, seed)).choice(where, max_items, replace=False))
        keep += where.tolist()
    keep.sort()
    return Items([items.ids[i] for i in keep], [items.contexts[i] for i in keep], [items.choices[i] for i in keep],
                 items.gold[keep], [items.domains[i] for i in keep], items.delimiter, items.length_norm)


def task_seed(task: str, seed: int) -> int:
    """A generator seed of its own for each task, so that one task's draw does not depend on the others."""
    return int(hashlib.sha256(f"{task}/{seed}".encode()).hexdigest()[:8], 16)


# ---- choices_files ------------------------------------------------------------------------------------------

def load_choices_files(cfg: ChoicesFilesDataset) -> Items:
    from mmc.data import data_files  # mmc.data registers this module's kinds

    root, files = data_files(cfg.path, ITEM_SUFFIXES, "task files")
    ids, contexts, all_choices, gold, domains = [], [], [], [], []
    for file in files:
        task = file.relative_to(root).with_suffix("").as_posix() if root.is_dir() else file.stem
        records = read_records(file)
        if not records:
            raise MMCError(f"{file} holds no items; give it one item per line/row or drop the file")
        for n, record in enumerate(records):
            context, item, answer = parse_item(record, file, n, cfg)
            ids.append(str(record[cfg.id_field]) if cfg.id_field else f"{task}/{n}")
            contexts.append(context)
            all_choices.append(item)
            gold.append(answer)
            domains.append(str(record[cfg.task_field]) if cfg.task_field else task)
    seen = {}
    for n, item_id in enumerate(ids):
        if item_id in seen:
            raise MMCError(f"item id {item_id!r} occurs twice (items {seen[item_id]} and {n} of {files_named(files)});"
                           f" give every item a unique {cfg.id_field!r} or set dataset.id_field=null")
        seen[item_id] = n
    return Items(ids, contexts, all_choices, np.array(gold, dtype=np.int64), domains, cfg.delimiter, cfg.length_norm)


def files_named(files: list[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"the {len(files)} files"


def read_records(file: Path) -> list[dict]:
    """The rows of a task file as dicts, without their missing cells (the corrupt-file checks of mmc.data)."""
    from mmc.data import read_table

    frame, _ = read_table(file)
    return [{k: v for k, v in row.items() if not is_missing(v)} for row in frame.to_dict("records")]


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_item(record: dict, file: Path, n: int, cfg: ChoicesFilesDataset) -> tuple[str, list[str], int]:
    """(context, choices, gold) of item n of `file`, or one-line MMCError naming the file, the item and the fix."""
    where = f"{file} item {n}"
    fields = [cfg.context_field, cfg.choices_field, cfg.gold_field, cfg.task_field, cfg.id_field]
    for name in filter(None, fields):
        if is_missing(record.get(name)):
            raise MMCError(f"{where} has no field {name!r} (it has: {', '.join(map(str, record)) or 'nothing'}); "
                           "fill it in or set dataset.context_field/choices_field/gold_field/task_field/id_field")
    context = record[cfg.context_field]
    if not isinstance(context, str):
        raise MMCError(f"{where}: field {cfg.context_field!r} is {type(context).__name__}, not text; "
                       "point dataset.context_field at the text column")
    raw = record[cfg.choices_field]
    if isinstance(raw, str):  # a .csv cell: the list as JSON
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise MMCError(f"{where}: field {cfg.choices_field!r} holds {raw[:40]!r}, not a JSON list of choices; "
                           'write it as ["first", "second", ...]') from None
    raw = raw.tolist() if isinstance(raw, np.ndarray) else raw
    if not isinstance(raw, (list, tuple)) or not all(isinstance(c, str) for c in raw):
        raise MMCError(f"{where}: field {cfg.choices_field!r} is not a list of texts; give the choices as a list")
    if len(raw) == 0:
        raise MMCError(f"{where} has no choices; give it two or more in field {cfg.choices_field!r}")
    if len(raw) < 2:
        raise MMCError(f"{where} has 1 choice; a multiple-choice item needs two or more")
    if not all(cfg.delimiter + c for c in raw):
        raise MMCError(f"{where} has an empty choice and dataset.delimiter is empty: nothing to score; drop it")
    gold = record[cfg.gold_field]
    try:
        index = int(gold) if not isinstance(gold, bool) and float(gold) == int(float(gold)) else None
    except (TypeError, ValueError):
        index = None
    if index is None:
        raise MMCError(f"{where}: gold {gold!r} is not an integer index; give the right choice's index from 0")
    if not 0 <= index < len(raw):
        raise MMCError(f"{where}: gold {index} is out of range for its {len(raw)} choices (0..{len(raw) - 1}); "
                       "give the right choice's index from 0")
    return context, list(raw), index


# ---- choices_builtin ----------------------------------------------------------------------------------------

# a context and a choice fit the zoo's 128 positions even with its byte tokenizer: 80 + 44 characters
CONTEXT_CHARS = 80  # the context: at most this many characters before the cut
MAX_ANSWER_CHARS = 44  # the longest continuation (a choice)
NEXT_WORDS = 4  # words of a continuation: 24 orders, of which a choice shows four
MIN_WORDS = 6  # words before the first cut of a block
WORD_STEP = 24  # words between cuts in one block
WORD = re.compile(r"\S+")
BUILTIN_TASKS = {"prose_word_order": "prose", "docstring_word_order": "docstrings", "code_word_order": "code"}


def next_words(block: str) -> list[tuple[str, str]]:
    """(context, the next NEXT_WORDS words with the whitespace before each) at cuts every WORD_STEP words."""
    words = list(WORD.finditer(block))
    out = []
    for k in range(MIN_WORDS, len(words) - NEXT_WORDS + 1, WORD_STEP):
        end = words[k - 1].end()
        start = next((w.start() for w in words[:k] if end - w.start() <= CONTEXT_CHARS), None)
        answer = block[end:words[k + NEXT_WORDS - 1].end()]
        if start is not None and len(answer) <= MAX_ANSWER_CHARS:
            out.append((block[start:end], answer))
    return out


def reorderings(answer: str, n: int, rng: np.random.Generator) -> list[str]:
    """`answer` and up to n - 1 other orders of its words (the whitespace between them stays in place)."""
    words = WORD.findall(answer)
    gaps = WORD.split(answer)[:-1]  # the whitespace before each word
    options = [answer]
    for _ in range(8 * n):  # distinct orders; repeated words can leave fewer than n
        order = "".join(gap + words[j] for gap, j in zip(gaps, rng.permutation(len(words))))
        if order not in options:
            options.append(order)
        if len(options) == n:
            break
    return options


def load_choices_builtin(cfg: ChoicesBuiltinDataset) -> Items:
    from mmc.data import builtin_blocks, is_eval_block  # mmc.data registers this module's kinds

    blocks, seen = builtin_blocks(), set()
    ids, contexts, all_choices, gold, domains = [], [], [], [], []
    for task, domain in BUILTIN_TASKS.items():
        rng = np.random.default_rng(task_seed(task, cfg.seed))
        for context, answer in (pair for block in blocks[domain] if is_eval_block(block) for pair in next_words(block)):
            options = reorderings(answer, cfg.n_choices, rng)
            item_id = f"{task}/{hashlib.sha256(json.dumps([context, answer]).encode()).hexdigest()[:12]}"
            if len(options) < cfg.n_choices or item_id in seen:  # too few orders, or a repeated block
                continue
            seen.add(item_id)
            order = rng.permutation(cfg.n_choices)
            ids.append(item_id)
            contexts.append(context)
            all_choices.append([options[j] for j in order])
            gold.append(int(np.flatnonzero(order == 0)[0]))
            domains.append(task)
    return Items(ids, contexts, all_choices, np.array(gold, dtype=np.int64), domains, "", cfg.length_norm)
