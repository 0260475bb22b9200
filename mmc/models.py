"""Models: ModelSpec, loading any `from_pretrained` source (local directory or hub id), parameter counts.

A leaf module: the pools (mmc.pool), the zoo and the tiny random models all build on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmc.errors import MMCError


@dataclass(frozen=True)
class ModelSpec:
    """One model of a pool. `source` is what `from_pretrained` takes: a local directory or a hub id."""

    name: str
    family: str
    source: str
    revision: str | None = None
    params: int | None = None  # filled from the loaded model when None


def is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def duplicates(names) -> list[str]:
    """Names that occur more than once, sorted."""
    names = list(names)
    return sorted({n for n in names if names.count(n) > 1})


def check_specs(specs: list[ModelSpec]) -> None:
    """Fail before any scoring on duplicate names or local paths that do not exist."""
    dupes = duplicates(s.name for s in specs)
    if dupes:
        raise MMCError(f"duplicate model names {dupes} in the pool; give every model a unique name")
    for s in specs:
        if is_local(s.source) and not Path(s.source).expanduser().is_dir():
            raise MMCError(f"model {s.name!r}: path {s.source} does not exist; fix its `path` in the pool config")


def load_model(spec: ModelSpec, device: str = "cpu", dtype=None, device_map: str | None = None,
               attn_implementation: str | None = "sdpa"):
    """(model, tokenizer) through the same `from_pretrained` path for local and hub models."""
    import torch  # heavy: loaded by the runs that score, not by start-up
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(spec.source).expanduser()) if is_local(spec.source) else spec.source
    kwargs = dict(revision=spec.revision, dtype=dtype or torch.float32)
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, attn_implementation=attn_implementation, **kwargs)
        except (ValueError, ImportError):  # architecture without SDPA support: fall back to its default
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise MMCError(f"model {spec.name!r}: cannot load {source!r} ({str(e).splitlines()[0]}); "
                       "check the path or hub id, and the network for hub models") from e
    if not device_map:
        model.to(device)
    model.eval()
    return model, tokenizer


def count_params(model, non_embedding: bool = False) -> int:
    """Total parameters, tied weights counted once. non_embedding: without the input token and position
    embeddings and without the output head, whether the head is tied to the input embeddings or not."""
    import torch

    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    if not non_embedding:
        return int(total)
    excluded = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings()
    if head is not None:
        excluded.update({id(p): p for p in head.parameters()})
    return int(total - sum(p.numel() for p in excluded.values()))
