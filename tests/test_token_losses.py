"""Token losses: every token's NLL and byte span, in the score cache and as token_losses.parquet.

References: the token sums are the LossMatrix totals (relative 1e-9); the spans are checked against each
token's own bytes (decoded from the byte-level vocabulary, written out here), under the documented rule: a
token's span ends at the end of the character holding its last byte, never before the previous span ends.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmc.scoring.stage as stage
from mmc.data import Corpus, text_id
from mmc.errors import MMCError
from mmc.paths import REPO_ROOT
from mmc.scoring.config import ScoringConfig
from mmc.scoring.stage import cached_loss_matrix, score_pool
from mmc.synthetic import synthetic_texts
from mmc.token_losses import TokenLosses

HARD_TEXTS = [
    "Ünïcödé — naïve café, 🙂🙃 emoji and 中文字符",
    "tabs\tand\t\ttabs, runs of     spaces,\n\nblank lines\n   indented\r\nwindows line",
    "x",
    "🙂",
    "  leading and trailing spaces  ",
    "special strings <|eos|> and <|bos|> are text",
]


def corpus(extra: int = 6) -> Corpus:
    texts = HARD_TEXTS + synthetic_texts(extra, seed=2, min_words=3, max_words=60)
    return Corpus(ids=[text_id(t) for t in texts], texts=texts, domains=["d"] * len(texts))


@pytest.fixture
def cfg(tmp_path):
    return ScoringConfig(device="cpu", cache_dir=str(tmp_path / "scores"), chunk_texts=4, batch_tokens=128,
                         window=32, token_losses=True)


def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable bytes stand for themselves, the others for 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


def expected_ends(text: str, tokens: list[str]) -> list[int]:
    """Byte end of each token's span, from the tokens' own bytes and the documented rule."""
    decoder = byte_level_decoder()
    pieces = [bytes(decoder[c] for c in (t[2:] if t.startswith("##") else t)) for t in tokens]
    data = text.encode("utf-8")
    assert b"".join(pieces) == data  # the tokens are exactly the text's bytes
    char_end = []  # the byte where the character holding each byte ends
    for c in text:
        char_end += [len(char_end) + len(c.encode("utf-8"))] * len(c.encode("utf-8"))
    ends, end, previous = [], 0, 0
    for piece in pieces:
        end += len(piece)
        previous = max(previous, char_end[end - 1])
        ends.append(previous)
    return ends


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "byte"])
def test_token_losses_sum_to_the_totals_and_partition_the_bytes(tiny_specs, tmp_path, cfg, kind):
    """GPT-2 byte-level BPE, a WordPiece and a byte tokenizer, on multi-byte characters, emoji, tabs, runs of
    spaces, special-token strings, texts longer than the window."""
    specs = tiny_specs(["gpt2", "llama"], tokenizer=kind)
    c = corpus()
    scores = score_pool(specs, c, cfg)
    matrix, tokens = scores.matrix, scores.token_losses
    assert tokens.models.tolist() == matrix.models.tolist() and tokens.text_ids.tolist() == matrix.text_ids.tolist()
    from mmc.models import load_model

    for i, spec in enumerate(specs):
        offsets, byte_end, nll = tokens.model(i)
        assert offsets.dtype == byte_end.dtype == np.int64 and nll.dtype == np.float64
        np.testing.assert_array_equal(np.diff(offsets), matrix.n_tokens[i])
        totals = np.array([nll[a:b].sum() for a, b in zip(offsets[:-1], offsets[1:])])
        np.testing.assert_allclose(totals, matrix.nll[i], rtol=1e-9)
        _, tokenizer = load_model(spec)
        for n, text in enumerate(c.texts):
            ends = byte_end[offsets[n]:offsets[n + 1]]
            starts = np.r_[0, ends[:-1]]
            assert (ends >= starts).all() and ends[-1] == c.n_bytes[n]  # in order, every byte once
            pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False,
                                                               split_special_tokens=True)["input_ids"])
            assert ends.tolist() == expected_ends(text, pieces), (kind, spec.name, text)

    path = tmp_path / "token_losses.parquet"
    tokens.to_parquet(path)
    table = pd.read_parquet(path)
    assert list(table.columns) == ["model", "text_id", "token", "byte_start", "byte_end", "nll"]
    assert len(table) == matrix.n_tokens.sum() and table["nll"].dtype == np.float64
    sums = table.groupby(["model", "text_id"], observed=True)["nll"].sum()
    for i, name in enumerate(matrix.models):
        np.testing.assert_allclose(sums[name].loc[matrix.text_ids].to_numpy(), matrix.nll[i], rtol=1e-9)
    first = table.groupby(["model", "text_id"], observed=True).head(1)
    assert (first["token"] == 0).all() and (first["byte_start"] == 0).all()
    back = TokenLosses.from_parquet(path, matrix.models[::-1], matrix.text_ids)
    for i in range(len(specs)):
        for ours, theirs in zip(back.model(i), tokens.model(len(specs) - 1 - i)):
            np.testing.assert_array_equal(ours, theirs)
    selected = tokens.select_models([1])
    assert selected.models.tolist() == [matrix.models[1]]
    np.testing.assert_array_equal(selected.model(0)[2], tokens.model(1)[2])


def test_totals_only_scores_are_rescored_for_their_tokens_chunk_by_chunk(tiny_specs, cfg, monkeypatch):
    """A cache holding totals only: asking for token losses rescores every text, chunk by chunk; a crash in the
    middle keeps the chunks written, and the relaunch scores only the rest."""
    (spec,) = tiny_specs(["gpt2"])
    c = corpus()
    without = ScoringConfig(**{**cfg.__dict__, "token_losses": False})
    totals = score_pool([spec], c, without)
    assert totals.token_losses is None
    real, calls = stage.score_sequences, []

    def crash_on_second_chunk(model, seqs, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(seqs))
        return real(model, seqs, *args, **kwargs)

    monkeypatch.setattr(stage, "score_sequences", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_pool([spec], c, cfg)
    with pytest.raises(MMCError, match=f"{cfg.chunk_texts} of {len(c)} texts with token losses"):
        cached_loss_matrix([spec], c, cfg)

    def counting(model, seqs, *args, **kwargs):
        calls.append(len(seqs))
        return real(model, seqs, *args, **kwargs)

    monkeypatch.setattr(stage, "score_sequences", counting)
    resumed = score_pool([spec], c, cfg)
    assert calls[0] == cfg.chunk_texts and sum(calls[1:]) == len(c) - cfg.chunk_texts
    offsets, _, nll = resumed.token_losses.model(0)
    np.testing.assert_allclose(np.add.reduceat(nll, offsets[:-1]), resumed.matrix.nll[0], rtol=1e-9)
    np.testing.assert_allclose(resumed.matrix.nll, totals.matrix.nll, rtol=1e-6)
    calls.clear()
    again = cached_loss_matrix([spec], c, cfg)  # the cache alone, token losses included
    np.testing.assert_array_equal(again.matrix.nll, resumed.matrix.nll)
    np.testing.assert_array_equal(again.token_losses.model(0)[2], nll)
    assert score_pool([spec], c, without).matrix.nll.tolist() == resumed.matrix.nll.tolist() and not calls


def test_damaged_or_foreign_parquet_files_are_one_line_errors(tmp_path):
    path = tmp_path / "token_losses.parquet"
    rows = pd.DataFrame({"model": ["m"] * 3, "text_id": ["t1", "t1", "t2"], "token": [0, 1, 0],
                         "byte_start": [0, 2, 0], "byte_end": [2, 5, 4], "nll": [1.0, 2.0, 3.0]})
    rows.to_parquet(path)
    good = TokenLosses.from_parquet(path, ["m"], ["t2", "t1"])
    offsets, byte_end, nll = good.model(0)
    assert offsets.tolist() == [0, 1, 3] and byte_end.tolist() == [4, 2, 5] and nll.tolist() == [3.0, 1.0, 2.0]
    cases = [
        (tmp_path / "missing.parquet", ["m"], ["t1"], "does not exist"),
        (tmp_path / "text.parquet", ["m"], ["t1"], "not a readable parquet file"),
        (tmp_path / "columns.parquet", ["m"], ["t1"], r"lacks columns \['nll'\]"),
        (path, ["m", "other"], ["t1"], r"no token losses of models \['other'\]"),
    ]
    (tmp_path / "text.parquet").write_text("not parquet")
    rows.drop(columns="nll").to_parquet(tmp_path / "columns.parquet")
    for file, models, text_ids, message in cases:
        with pytest.raises(MMCError, match=message):
            TokenLosses.from_parquet(file, models, text_ids)
    with pytest.raises(MMCError, match="no tokens of model 'm' on text 't3'"):
        TokenLosses.from_parquet(path, ["m"], ["t1", "t3"]).model(0)
    rows.assign(byte_start=[0, 1, 0]).to_parquet(path)
    with pytest.raises(MMCError, match="do not partition its bytes"):
        TokenLosses.from_parquet(path, ["m"], ["t1", "t2"]).model(0)


def test_a_run_logs_token_losses_beside_the_loss_matrix(tmp_path):
    """`python launch.py pool=tiny_random` (token losses on by default for this kind): token_losses.parquet holds
    a row per token of every (model, text) of loss_matrix.npz, summing to its NLL, its spans covering the bytes."""
    from mlflow.tracking import MlflowClient

    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), "pool=tiny_random", "pool.tiny_random.widths=[32]",
           "pool.tiny_random.architectures=[gpt_neox]", "pool.tiny_random.context=64", "stage=score",
           "dataset.max_texts=4", "dataset.max_chars=400", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    out = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    table = pd.read_parquet(out / "token_losses.parquet")
    with np.load(out / "loss_matrix.npz") as z:
        models, text_ids, nll, n_tokens, n_bytes = (z[k] for k in ("models", "text_ids", "nll", "n_tokens", "n_bytes"))
    groups = table.groupby(["model", "text_id"], observed=True)
    for i, model in enumerate(models):
        for n, text in enumerate(text_ids):
            rows = groups.get_group((model, text)).sort_values("token")
            assert rows["token"].tolist() == list(range(n_tokens[i, n]))
            assert rows["nll"].sum() == pytest.approx(nll[i, n], rel=1e-9)
            ends = rows["byte_end"].to_numpy()
            np.testing.assert_array_equal(rows["byte_start"], np.r_[0, ends[:-1]])
            assert (np.diff(ends) >= 0).all() and ends[-1] == n_bytes[n]


@pytest.mark.parametrize("value", ["maybe", "truee"])
def test_bad_token_losses_value_fails_in_one_line(tmp_path, value):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), f"scoring.token_losses={value}",
                           f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "token_losses" in lines[0]
