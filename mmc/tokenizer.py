"""Small tokenizers trained offline with the `tokenizers` library, wrapped for transformers.

Every kind pre-tokenises to bytes (GPT-2's byte-level alphabet), so any string is encodable; only
`wordpiece` can still produce its unknown token (a word longer than `max_input_chars_per_word`).
(No unigram: its trainer gives slightly different scores from run to run, so it is not deterministic.)
"""
from __future__ import annotations

from typing import Iterable

from mmc.errors import MMCError

KINDS = ("bpe", "byte", "wordpiece")
BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, kind: str = "bpe", add_bos: bool = True,
                    bos_in_template: bool = False):
    """Train a tokenizer on `texts` (deterministic for the same texts and arguments). `byte` ignores
    vocab_size (256 bytes + specials); `wordpiece` adds the bytes as continuation pieces (up to +256).

    add_bos=False: no BOS token at all (EOS and PAD only). bos_in_template=True: the post-processor
    prepends BOS itself, like Llama's tokenizers (needs add_bos). Returns a transformers PreTrainedTokenizerFast.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # heavy: not at start-up
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise MMCError(f"unknown tokenizer kind {kind!r}; use one of {', '.join(KINDS)}")
    if bos_in_template and not add_bos:
        raise MMCError("bos_in_template needs a BOS token; set add_bos=True")
    specials = ([BOS] if add_bos else []) + [EOS, PAD] + ([UNK] if kind == "wordpiece" else [])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if kind != "byte" and vocab_size < len(alphabet) + len(specials):
        raise MMCError(f"vocab_size {vocab_size} is below the byte alphabet plus specials "
                       f"({len(alphabet) + len(specials)}); raise it")

    if kind == "byte":  # pure bytes: a BPE model with the 256 byte symbols and no merges
        vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                      show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                            initial_alphabet=alphabet, show_progress=False)
    # No prefix space: the tokenizer encodes exactly the string it is given.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=kind != "byte")
    tokenizer.decoder = decoders.ByteLevel()
    if kind != "byte":
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
    if kind == "wordpiece":
        # Every byte as a start and a continuation piece, so no text maps to UNK but over-long words (the trainer
        # keeps an arbitrary subset when the vocabulary is small); sorted, since it numbers tied pieces at random.
        pieces = sorted((set(tokenizer.get_vocab()) | set(alphabet) | {f"##{c}" for c in alphabet}) - set(specials))
        tokenizer.model = models.WordPiece({t: i for i, t in enumerate(specials + pieces)}, unk_token=UNK)
        tokenizer.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.ByteLevel()])
    if bos_in_template:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))])

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS if add_bos else None, eos_token=EOS, pad_token=PAD,
        unk_token=UNK if UNK in specials else None)
