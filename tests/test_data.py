"""Corpus loaders: builtin determinism and train/eval disjointness, every file format, bad inputs."""
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from mmc.data import BuiltinDataset, DatasetConfig, FilesDataset, HfDataset, builtin_blocks, load_builtin, load_corpus
from mmc.errors import MMCError


def held_out(block: str) -> bool:
    """The split rule, written out independently: the first 64 bits of the block's SHA-256 below 0.3."""
    return int(hashlib.sha256(block.encode()).hexdigest()[:16], 16) < 0.3 * 2**64


def files_cfg(path, **kw) -> FilesDataset:
    return FilesDataset(**{"path": str(path), "min_chars": 1, "max_chars": None, "max_texts": None,
                            **kw})


# ---- builtin -------------------------------------------------------------------------------------

def test_builtin_is_deterministic_and_in_range():
    # another interpreter, another hash seed: the same texts in the same order
    code = "from mmc.data import BuiltinDataset, load_corpus; print(load_corpus(BuiltinDataset()).hash)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == load_corpus(BuiltinDataset()).hash
    texts, domains = load_builtin("eval", 200, 2000)
    assert set(domains) == {"prose", "code", "docstrings"}
    assert all(200 <= len(t) <= 2000 for t in texts)
    assert len({len(t) for t in texts}) > len(texts) // 2  # lengths spread over the range


def test_builtin_train_and_eval_are_disjoint_whatever_the_lengths():
    train = "\x00".join(load_builtin("train", 200, 4000)[0])  # what the zoo trains on
    evaluation = "\x00".join(load_builtin("eval", 300, 1500)[0])
    for domain, blocks in builtin_blocks().items():
        # whole blocks of 200..1500 characters: never cut by either packing, unique in their domain
        long_blocks = [b for b in blocks if 200 <= len(b) <= 1500 and blocks.count(b) == 1][:150]
        assert sum(held_out(b) for b in long_blocks) > 10, domain
        for block in long_blocks:
            assert (block in train) != held_out(block), (domain, block[:80])
            if held_out(block):
                assert block in evaluation, (domain, block[:80])


def test_builtin_code_has_no_docstrings_and_docstrings_are_prose():
    texts, domains = load_builtin("all", 200, 4000)
    code = [t for t, d in zip(texts, domains) if d == "code"]
    assert any("def " in t for t in code)
    assert not any('"""Return' in t for t in code)  # stdlib docstrings start this way
    docs = [t for t, d in zip(texts, domains) if d == "docstrings"]
    assert sum("def " in t for t in docs) < len(docs) / 10


def test_corpus_is_balanced_seeded_and_reproducible():
    corpus = load_corpus(BuiltinDataset(max_texts=60, seed=1))
    assert Counter(corpus.domains) == {"prose": 20, "code": 20, "docstrings": 20}
    again = load_corpus(BuiltinDataset(max_texts=60, seed=1))
    assert again.ids == corpus.ids and corpus.hash == again.hash
    other = load_corpus(BuiltinDataset(max_texts=60, seed=2))
    assert other.ids != corpus.ids
    assert corpus.ids == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in corpus.texts]
    assert list(corpus.n_bytes) == [len(t.encode("utf-8")) for t in corpus.texts]


def test_small_domains_run_out_first():
    corpus = load_corpus(BuiltinDataset(max_texts=None, min_chars=200, max_chars=2000))
    counts = Counter(corpus.domains)
    n = 3 * counts["prose"] + 30  # beyond prose's share: prose gives all it has, the others share the rest
    sample = Counter(load_corpus(BuiltinDataset(max_texts=n, min_chars=200, max_chars=2000)).domains)
    assert sample["prose"] == counts["prose"] and sum(sample.values()) == n
    assert abs(sample["code"] - sample["docstrings"]) <= 1


# ---- files ---------------------------------------------------------------------------------------

def test_txt_one_text_per_file_with_folder_domains(tmp_path):
    (tmp_path / "news").mkdir()
    (tmp_path / "a.txt").write_text("top level text\n\nsecond paragraph\n")
    (tmp_path / "news" / "b.txt").write_text("a news text\n")
    (tmp_path / "ignored.md").write_text("not a text file of the corpus")
    corpus = load_corpus(files_cfg(tmp_path))
    assert corpus.texts == ["top level text\n\nsecond paragraph\n", "a news text\n"]
    assert corpus.domains == ["all", "news"]


def test_txt_blocks_mode(tmp_path):
    (tmp_path / "a.txt").write_text("first block\nstill first\n\n\nsecond block\n\nthird\n")
    corpus = load_corpus(files_cfg(tmp_path / "a.txt", txt_split="blocks"))
    assert corpus.texts == ["first block\nstill first", "second block", "third"]


def test_jsonl_csv_parquet_with_text_and_domain_fields(tmp_path):
    rows = [{"body": "alpha text", "src": "x"}, {"body": "beta text, with a comma", "src": "y"},
            {"body": "gamma \"quoted\"\nnew line", "src": "x"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pd.DataFrame(rows).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    for name in ("a.jsonl", "b.csv", "c.parquet"):
        corpus = load_corpus(files_cfg(tmp_path / name, text_field="body", domain_field="src", dedupe=False))
        assert corpus.texts == [r["body"] for r in rows], name
        assert corpus.domains == ["x", "y", "x"], name
    whole = load_corpus(files_cfg(tmp_path, text_field="body"))  # the directory, duplicates dropped
    assert whole.texts == [r["body"] for r in rows]


def test_filters_dedupe_and_sampling(tmp_path):
    texts = ["short", "a" * 50, "b" * 60, "a" * 50, "c" * 500]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    cfg = files_cfg(tmp_path / "t.jsonl", min_chars=10)
    cfg.max_chars = 100
    assert load_corpus(cfg).texts == ["a" * 50, "b" * 60]
    cfg.dedupe = False
    assert load_corpus(cfg).texts == ["a" * 50, "b" * 60, "a" * 50]
    cfg.max_texts = 2
    assert len(load_corpus(cfg)) == 2


def test_non_utf8_bytes_are_replaced_and_counted_on_the_scored_text(tmp_path, caplog):
    (tmp_path / "good.txt").write_text("fine text é")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 latin-1 bytes")
    with caplog.at_level(logging.WARNING, logger="mmc.data"):
        corpus = load_corpus(files_cfg(tmp_path))
    assert "1 of 2 files" in caplog.text
    bad = corpus.texts[corpus.texts.index("caf\ufffd latin-1 bytes")]
    assert corpus.n_bytes[corpus.texts.index(bad)] == len("caf latin-1 bytes") + 3  # U+FFFD is 3 bytes


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"text": "x"}\nnot json\n', "a.jsonl:2 is not valid JSON"),
    ("a.jsonl", '["a list"]\n', "is not a JSON object"),
    ("a.jsonl", '{"body": "x"}\n', "no field 'text' (fields: body)"),
    ("a.csv", "body,other\nx,y\n", "no field 'text' (fields: body, other)"),
    ("a.txt", "tiny", "empty after filters"),
    ("a.pdf", "x", "is not a .txt/.jsonl/.csv/.parquet file"),
])
def test_bad_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    cfg = files_cfg(tmp_path / name)
    cfg.min_chars = 10
    with pytest.raises(MMCError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus(cfg)


@pytest.mark.parametrize("name, content, message", [
    ("a.csv", b"", "a.csv is not a readable CSV file (No columns to parse"),
    ("a.parquet", b"PAR1 not really", "a.parquet is not a readable parquet file"),
    ("a.txt", "UTF-16 text".encode("utf-16"), "a.txt is not text (it holds NUL bytes"),
    ("a.txt", bytes(range(128, 256)) * 4 + b" a few ascii words", "a.txt is not text ("),  # mostly not UTF-8
    ("a.jsonl", b'{"text": "x"}\n\x00\x01\x02', "a.jsonl is not text (it holds NUL bytes"),
])
def test_unreadable_and_binary_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MMCError, match=re.escape(message)):
        load_corpus(files_cfg(tmp_path / name))


def test_text_with_a_few_bytes_of_another_encoding_is_still_text(tmp_path):
    sentence = "Les élèves étudient à l'école. "  # 5 of its 31 characters are not ASCII: 16 %
    (tmp_path / "a.txt").write_bytes(sentence.encode("latin-1") * 3)
    (text,) = load_corpus(files_cfg(tmp_path / "a.txt")).texts
    assert text.count("\ufffd") == 3 * sum(ord(c) > 127 for c in sentence)


def test_bad_paths_and_kinds(tmp_path):
    with pytest.raises(MMCError, match="does not exist"):
        load_corpus(files_cfg(tmp_path / "missing"))
    with pytest.raises(MMCError, match="no .txt/.jsonl/.csv/.parquet files under"):
        load_corpus(files_cfg(tmp_path))
    with pytest.raises(MMCError, match="unknown dataset kind 'web'"):
        load_corpus(DatasetConfig(kind="web"))
    with pytest.raises(MMCError, match="dataset.split='test' is not one of eval, train, all"):
        load_corpus(BuiltinDataset(split="test"))
    with pytest.raises(MMCError, match="min_chars"):
        load_corpus(BuiltinDataset(min_chars=500, max_chars=100))
    (tmp_path / "a.parquet").write_bytes(pd.DataFrame({"text": [1, 2]}).to_parquet())
    with pytest.raises(MMCError, match="non-text values"):
        load_corpus(files_cfg(tmp_path / "a.parquet"))


# ---- hf ------------------------------------------------------------------------------------------

def test_hf_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(MMCError, match=r"pip install mmc\[hf\]"):
        load_corpus(HfDataset(name="wikitext", split="test"))


def test_hf_local_dataset_and_missing_field(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(json.dumps({"text": f"text number {i}"}) for i in range(5)))
    cfg = HfDataset(name=str(data), config_name=None, split="train", min_chars=1, max_texts=None)
    assert load_corpus(cfg).texts == [f"text number {i}" for i in range(5)]
    cfg.text_field = "body"
    with pytest.raises(MMCError, match="has no field 'body'"):
        load_corpus(cfg)
