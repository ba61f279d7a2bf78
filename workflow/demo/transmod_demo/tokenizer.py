"""The demo's WordPiece tokenizer, trained on the demo's texts (no hub download)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transmod.errors import TransmodError

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_LENGTH = 128  # longest tokenised input the demo models accept

# ---------------------------------------------------------------------------------------------
# Tokenizer


def _wordpiece_vocab(words: Mapping[str, int], size: int) -> list[str]:
    """WordPiece pieces by BPE merges over word counts, ties broken by the pieces' text.

    The `tokenizers` trainer breaks ties in hash order, so the same texts give different vocabularies
    from run to run; this learner is the same algorithm, made deterministic.
    """
    from collections import Counter, defaultdict

    splits = {w: [w[0], *("##" + c for c in w[1:])] for w in words}
    pieces = sorted({p for split in splits.values() for p in split})
    known = set(pieces)
    pairs: Counter[tuple[str, str]] = Counter()
    holders: defaultdict[tuple[str, str], set[str]] = defaultdict(set)  # pair -> words that hold it

    def count(w: str, sign: int) -> None:
        for pair in zip(splits[w], splits[w][1:]):
            pairs[pair] += sign * words[w]
            if sign > 0:
                holders[pair].add(w)

    for w in splits:
        count(w, 1)
    while len(pieces) < size:
        pairs = +pairs  # drop pairs whose count fell to zero
        if not pairs:
            break
        a, b = max(pairs, key=lambda pair: (pairs[pair], pair))
        merged = a + b[2:]
        for w in sorted(holders.pop((a, b))):
            count(w, -1)
            split, i = splits[w], 0
            while i < len(split) - 1:
                if split[i] == a and split[i + 1] == b:
                    split[i:i + 2] = [merged]
                i += 1
            count(w, 1)
        if merged not in known:
            known.add(merged)
            pieces.append(merged)
    return pieces


def train_tokenizer(texts: Sequence[str], out_dir: str | Path, vocab_size: int = 700) -> Path:
    """A cased BERT-style WordPiece tokenizer learned offline, saved as a transformers fast tokenizer."""
    from collections import Counter

    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise TransmodError(f"{out_dir}: no texts to train the tokenizer on")
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces = _wordpiece_vocab(words, vocab_size - len(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *pieces])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH, pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    out_dir = Path(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


