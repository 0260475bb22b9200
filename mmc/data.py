"""Corpus: the texts every model is scored on, and the loaders that build it (builtin, files, hf).

The builtin corpus is assembled from the running Python installation, in three domains:
`prose` (the language reference in pydoc_data.topics), `code` (top-level standard-library modules,
docstrings removed) and `docstrings` (the docstrings of those modules). It is the same on every
installation of the same Python version. Source blocks (a paragraph, a top-level statement, a
docstring) go to the zoo's training split or to the evaluation split by the hash of their content,
before they are packed into documents: no evaluation text is ever trained on, whatever the document
lengths asked for.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import logging
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import MISSING

from mmc.errors import MMCError, first_line
from mmc.paths import file_provenance
from mmc.registry import Option, Registry, check_node, choices
from mmc.tasks import ChoicesBuiltinDataset, ChoicesFilesDataset, load_choices_builtin, load_choices_files

log = logging.getLogger(__name__)

DOMAINS = ("prose", "code", "docstrings")
SPLITS = ("eval", "train", "all")
EVAL_SHARE = 0.3  # share of builtin source blocks held out from zoo training
FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
TXT_SPLITS = ("file", "blocks")
BINARY_SHARE = 0.25  # a "text" file with NUL bytes, or with a larger share of its characters not UTF-8, is not text


@dataclass
class DatasetConfig:
    """Keys of every dataset kind: which texts are kept (length, duplicates) and how many are drawn."""

    kind: str = MISSING  # set by the option: dataset=builtin, dataset=files, ...
    max_texts: Optional[int] = 1000  # drawn evenly across domains; null: all
    seed: int = 0
    min_chars: int = 1  # shorter texts are dropped
    max_chars: Optional[int] = None  # longer texts are dropped
    dedupe: bool = True

    def provenance(self) -> tuple[str, str]:
        """(name, source) of the texts as the run's MLflow dataset input shows them: where they come from."""
        raise NotImplementedError

    def check(self, path: str) -> None:
        if self.min_chars < 1 or (self.max_chars is not None and self.max_chars < self.min_chars):
            raise MMCError(f"{path}.min_chars={self.min_chars}, max_chars={self.max_chars}: need "
                           "1 <= min_chars <= max_chars")
        if self.max_texts is not None and self.max_texts < 1:
            raise MMCError(f"{path}.max_texts={self.max_texts}; use null (all) or at least 1")


@dataclass
class BuiltinDataset(DatasetConfig):
    """Texts of the running Python installation in three domains (see the module docstring)."""

    kind: str = "builtin"
    split: str = field(default="eval", metadata=choices(SPLITS))  # train: what the zoo trains on
    max_texts: Optional[int] = 150
    min_chars: int = 200
    max_chars: Optional[int] = 1000  # also the longest document assembled

    def provenance(self) -> tuple[str, str]:
        return f"builtin-{self.split}", sysconfig.get_paths()["stdlib"]


@dataclass
class FilesDataset(DatasetConfig):
    """.txt/.jsonl/.csv/.parquet files; the domain is `domain_field`, else the file's sub-directory."""

    kind: str = "files"
    path: str = MISSING  # a file or a directory of such files
    text_field: str = "text"  # .jsonl/.csv/.parquet
    domain_field: Optional[str] = None
    txt_split: str = field(default="file", metadata=choices(TXT_SPLITS))  # .txt: a text per file or per block

    def provenance(self) -> tuple[str, str]:
        return file_provenance(self.path)


@dataclass
class HfDataset(DatasetConfig):
    """A `datasets` dataset (pip install mmc[hf]; needs the network or a local copy)."""

    kind: str = "hf"
    name: str = "wikitext"  # a dataset name or a local dataset path
    config_name: Optional[str] = "wikitext-2-raw-v1"
    split: str = "test"
    text_field: str = "text"
    domain_field: Optional[str] = None  # null: one domain, "all"
    min_chars: int = 200

    def provenance(self) -> tuple[str, str]:
        local = Path(self.name).expanduser()
        source = str(local.resolve()) if local.exists() else f"https://huggingface.co/datasets/{self.name}"
        return "/".join(p for p in (self.name, self.config_name, self.split) if p), source


@dataclass
class Corpus:
    """Evaluation texts with stable ids (content hashes) and domain labels."""

    ids: list[str]
    texts: list[str]
    domains: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_bytes(self) -> np.ndarray:
        """UTF-8 bytes of exactly the strings that are scored."""
        return np.array([len(t.encode("utf-8")) for t in self.texts], dtype=np.int64)

    @property
    def n_chars(self) -> np.ndarray:
        return np.array([len(t) for t in self.texts], dtype=np.int64)

    @property
    def hash(self) -> str:
        return corpus_hash(self.ids)


def corpus_hash(ids: list[str]) -> str:
    """Hash of the ordered text ids: two corpora with the same hash hold the same texts."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def text_id(text: str) -> str:
    """Stable content id of a text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_corpus(cfg: DatasetConfig) -> Corpus:
    """The evaluation corpus: texts from `cfg.kind`, length-filtered, deduplicated, sampled."""
    check_node(cfg, "dataset")
    texts, domains = DATASETS.run(cfg.kind)(cfg)
    return select_texts(texts, domains, cfg)


def select_texts(texts: list[str], domains: list[str], cfg: DatasetConfig) -> Corpus:
    """Length filter, dedupe, then up to max_texts drawn evenly across domains (original order kept)."""
    max_chars = cfg.max_chars or float("inf")
    keep = [i for i, t in enumerate(texts) if cfg.min_chars <= len(t) <= max_chars]
    if cfg.dedupe:
        first = {}
        for i in keep:
            first.setdefault(text_id(texts[i]), i)
        keep = sorted(first.values())
    if not keep:
        raise MMCError(f"the corpus is empty after filters ({len(texts)} texts, none with {cfg.min_chars}.."
                       f"{cfg.max_chars} characters); widen dataset.min_chars/max_chars or check the source")
    if cfg.max_texts is not None and cfg.max_texts < len(keep):
        keep = balanced_sample(keep, [domains[i] for i in keep], cfg.max_texts, cfg.seed)
    return Corpus([text_id(texts[i]) for i in keep], [texts[i] for i in keep], [domains[i] for i in keep])


def balanced_sample(items: list[int], domains: list[str], n: int, seed: int) -> list[int]:
    """n items taken round-robin over domains in a seeded random order (small domains run out first)."""
    rng = np.random.default_rng(seed)
    domains = np.asarray(domains)
    rank = np.empty(len(items), dtype=np.int64)
    for d in np.unique(domains):  # rank of each item inside its domain's shuffled list
        where = np.flatnonzero(domains == d)
        rank[where[rng.permutation(len(where))]] = np.arange(len(where))
    order = np.lexsort((domains, rank))  # rank first, then domain: round-robin
    return sorted(items[i] for i in order[:n])


# ---- builtin: the running Python installation ----------------------------------------------------

def load_builtin(split: str = "eval", min_chars: int = 200, max_chars: int = 4000) -> tuple[list[str], list[str]]:
    """(texts, domains) of the builtin corpus: documents of min_chars..max_chars characters."""
    texts, domains = [], []
    for d, blocks in builtin_blocks().items():
        chosen = [b for b in blocks if split == "all" or is_eval_block(b) == (split == "eval")]
        seed = int(hashlib.sha256(f"{d}/{split}".encode()).hexdigest()[:8], 16)
        docs = pack(chosen, min_chars, max_chars, np.random.default_rng(seed))
        texts += docs
        domains += [d] * len(docs)
    return texts, domains


def is_eval_block(block: str) -> bool:
    return int(text_id(block), 16) / 16**16 < EVAL_SHARE


@functools.lru_cache(maxsize=1)
def builtin_blocks() -> dict[str, list[str]]:
    """Source blocks per domain, in a fixed order: paragraphs, top-level statements, docstrings."""
    from pydoc_data.topics import topics

    prose = [p.strip("\n") for key in sorted(topics) for p in topics[key].split("\n\n") if p.strip()]
    code, docstrings = [], []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    # Top-level modules only: every installation ships them; _sysconfigdata depends on the machine.
    for file in sorted(f for f in stdlib.glob("*.py") if not f.name.startswith("_sysconfigdata")):
        source = file.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a module written for another Python version (e.g. lib2to3 tests)
            continue
        documented = [n for n in definitions(tree) if has_docstring(n)]
        code += code_blocks(source, tree, documented)
        docstrings += [ast.get_docstring(n) for n in documented]
    return {"prose": prose, "code": [b for b in code if b.strip()], "docstrings": docstrings}


def definitions(node: ast.AST):
    """The node and every statement nested in it (expressions skipped: they hold no docstrings)."""
    yield node
    for name in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, name, ()):
            if isinstance(child, (ast.stmt, ast.excepthandler, getattr(ast, "match_case", ast.stmt))):
                yield from definitions(child)


def has_docstring(node: ast.AST) -> bool:
    return (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and bool(node.body)
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
            and isinstance(node.body[0].value.value, str))


def code_blocks(source: str, tree: ast.Module, documented: list[ast.AST]) -> list[str]:
    """One block per top-level statement (with its decorators and the comments after it), docstrings cut out."""
    lines = source.splitlines(keepends=True)
    drop = set()
    for node in documented:
        doc = node.body[0]
        first, last = lines[doc.lineno - 1].lstrip(), lines[doc.end_lineno - 1].rstrip()
        if first[:1] in "\"'" or first[:2].lower() in ("r\"", "r'", "u\"", "u'"):
            if last.endswith(("'", '"')):  # the docstring owns its lines: nothing else on them
                drop.update(range(doc.lineno - 1, doc.end_lineno))
    starts = sorted({0} | {min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) - 1
                           for n in tree.body})
    bounds = zip(starts, starts[1:] + [len(lines)])
    return ["".join(lines[i] for i in range(a, b) if i not in drop).strip("\n") for a, b in bounds]


def pack(blocks: list[str], min_chars: int, max_chars: int, rng: np.random.Generator) -> list[str]:
    """Join consecutive blocks into documents whose lengths are drawn log-uniformly in [min_chars, max_chars].

    Blocks longer than max_chars are cut at line breaks; documents shorter than min_chars are dropped.
    """
    def target() -> float:
        return float(np.exp(rng.uniform(np.log(min_chars), np.log(max_chars))))

    docs, current, goal = [], "", target()
    for piece in (p for b in blocks for p in cut(b, max_chars)):
        if current and len(current) + 2 + len(piece) > max_chars:
            docs.append(current)
            current, goal = "", target()
        current = f"{current}\n\n{piece}" if current else piece
        if len(current) >= goal:
            docs.append(current)
            current, goal = "", target()
    docs.append(current)
    return [d for d in docs if len(d) >= min_chars]


def cut(block: str, max_chars: int) -> list[str]:
    """Pieces of at most max_chars characters, cut after line breaks where possible."""
    pieces = []
    while len(block) > max_chars:
        at = block.rfind("\n", 0, max_chars) + 1 or max_chars
        pieces.append(block[:at].rstrip("\n"))
        block = block[at:]
    return pieces + [block] if block.strip() else pieces


# ---- files: a directory or a single file ---------------------------------------------------------

def load_files(cfg: FilesDataset) -> tuple[list[str], list[str]]:
    """(texts, domains) from .txt/.jsonl/.csv/.parquet files. The domain is `domain_field` when given,
    else the file's sub-directory under `path` ("all" at the top). Non-UTF-8 bytes are replaced by U+FFFD."""
    root, files = data_files(cfg.path, FILE_SUFFIXES, "texts")
    texts, domains, replaced = [], [], 0
    for file in files:
        folder = file.parent.relative_to(root).as_posix() if root.is_dir() else "."
        rows, bad = read_file(file, cfg.text_field, cfg.domain_field, cfg.txt_split)
        texts += [t for t, _ in rows]
        domains += [d if d is not None else ("all" if folder == "." else folder) for _, d in rows]
        replaced += bad
    if replaced:
        log.warning("%d of %d files held bytes that are not UTF-8; they were replaced by U+FFFD", replaced, len(files))
    return texts, domains


def data_files(path: str, suffixes: tuple[str, ...], what: str) -> tuple[Path, list[Path]]:
    """(root, files): the file `path`, or every file under the directory `path` with one of `suffixes`; one-line
    MMCError when there is none. `what` names their contents in the messages (texts, task files)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise MMCError(f"dataset.path {root} does not exist; point it at a file or a directory of {what}")
    if root.is_dir():
        files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix in suffixes)
        if not files:
            raise MMCError(f"no {'/'.join(suffixes)} files under {root}; put {what} there or fix dataset.path")
        return root, files
    if root.suffix not in suffixes:
        raise MMCError(f"{root} is not a {'/'.join(suffixes)} file; convert it or fix dataset.path")
    return root, [root]


def read_file(file: Path, text_field: str, domain_field: str | None, txt_split: str):
    """([(text, domain or None)], 1 if non-UTF-8 bytes were replaced else 0)."""
    if file.suffix != ".txt":
        frame, bad = read_table(file)
        return table_rows(frame, file, text_field, domain_field), bad
    text, bad = decode_text(file)
    if txt_split == "file":
        return [(text, None)], bad
    return [(b.strip("\n"), None) for b in text.split("\n\n") if b.strip()], bad


def read_table(file: Path):
    """(a pandas DataFrame of the rows of a .jsonl/.csv/.parquet file, 1 if non-UTF-8 bytes were replaced else 0);
    one-line MMCError for a file that is not one. A .csv's cells are strings."""
    import pandas as pd

    if file.suffix == ".parquet":
        from pyarrow import ArrowException

        try:
            return pd.read_parquet(file), 0
        except (ValueError, OSError, ArrowException) as e:
            raise MMCError(f"{file} is not a readable parquet file ({first_line(e)}); rewrite it or remove it "
                           "from dataset.path") from e
    text, bad = decode_text(file)
    if file.suffix == ".csv":
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), bad
        except ValueError as e:  # pandas' ParserError and EmptyDataError
            raise MMCError(f"{file} is not a readable CSV file ({first_line(e)}); fix it or remove it "
                           "from dataset.path") from e
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise MMCError(f"{file}:{n} is not valid JSON ({e.msg}); fix the line or drop it") from e
            if not isinstance(record, dict):
                raise MMCError(f"{file}:{n} is not a JSON object; write one JSON object per line")
            records.append(record)
    return pd.DataFrame.from_records(records), bad


def decode_text(file: Path) -> tuple[str, int]:
    """(the file's text, 1 if non-UTF-8 bytes were replaced by U+FFFD else 0); MMCError for a binary file."""
    raw = file.read_bytes()
    try:
        text, bad = raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text, bad = raw.decode("utf-8", errors="replace"), 1
    replaced = text.count("\ufffd") / max(len(text), 1) if bad else 0.0
    if b"\x00" in raw or replaced > BINARY_SHARE:
        why = "it holds NUL bytes" if b"\x00" in raw else f"{replaced:.0%} of it is not UTF-8"
        raise MMCError(f"{file} is not text ({why}: a binary file, or text in another encoding); convert it to "
                       "UTF-8 text or remove it from dataset.path")
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    return text, bad


def table_rows(frame, file: Path, text_field: str, domain_field: str | None) -> list[tuple[str, str | None]]:
    for field in [text_field] + ([domain_field] if domain_field else []):
        if field not in frame.columns:
            raise MMCError(f"{file} has no field {field!r} (fields: {', '.join(map(str, frame.columns))}); "
                           "set dataset.text_field/domain_field")
    texts = frame[text_field].tolist()
    domains = frame[domain_field].astype(str).tolist() if domain_field else [None] * len(texts)
    bad = [v for v in texts if not (isinstance(v, str) or v is None or v != v)]  # None / NaN: missing text
    if bad:
        raise MMCError(f"{file}: field {text_field!r} holds non-text values such as {bad[0]!r}; point "
                       "dataset.text_field at a text column")
    return [(t, d) for t, d in zip(texts, domains) if isinstance(t, str)]


# ---- hf: the `datasets` library (optional extra) -------------------------------------------------

def load_hf(cfg: HfDataset) -> tuple[list[str], list[str]]:
    name, split, text_field, domain_field = cfg.name, cfg.split, cfg.text_field, cfg.domain_field
    try:
        import datasets
    except ImportError as e:
        raise MMCError("dataset=hf needs the `datasets` package: pip install mmc[hf]") from e
    try:
        ds = datasets.load_dataset(name, cfg.config_name, split=split)
    except Exception as e:  # network, unknown name or split: the library's own message says which
        raise MMCError(f"cannot load dataset {name!r} ({cfg.config_name}, split {split!r}): {first_line(e)}") from e
    for field in [text_field] + ([domain_field] if domain_field else []):
        if field not in ds.column_names:
            raise MMCError(f"dataset {name!r} has no field {field!r} (fields: {', '.join(ds.column_names)}); "
                           "set dataset.text_field/domain_field")
    texts = ds[text_field]
    domains = [str(d) for d in ds[domain_field]] if domain_field else ["all"] * len(texts)
    kept = [i for i, t in enumerate(texts) if isinstance(t, str)]
    return [texts[i] for i in kept], [domains[i] for i in kept]


def load_builtin_dataset(cfg: BuiltinDataset) -> tuple[list[str], list[str]]:
    return load_builtin(cfg.split, cfg.min_chars, cfg.max_chars or 4000)


DATASETS = Registry("dataset kind", [
    Option("builtin", load_builtin_dataset, BuiltinDataset),
    Option("files", load_files, FilesDataset),
    Option("hf", load_hf, HfDataset),
    Option("choices_files", load_choices_files, ChoicesFilesDataset),  # task corpora: mmc.tasks
    Option("choices_builtin", load_choices_builtin, ChoicesBuiltinDataset),
])
