"""Offline demo assets: synthetic task data in the hub schemas, one tokenizer, four tiny models.

Machines here cannot reach the hub, so the demo workflow and the tests run on what this module
builds from a seed in seconds on a CPU: small but learnable data for NER, PI and NLI in made-up
languages, a WordPiece tokenizer trained on it, and two teacher/student pairs shaped like the
study's (BERT -> DistilBERT made of every second teacher layer; XLM-R wide -> XLM-R narrow).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transmod.data import SPLITS, get_task, write_hub_folder
from transmod.errors import TransmodError

DEMO_LANGS: tuple[str, ...] = ("en", "de")
DEFAULT_SIZES: dict[str, int] = {"train": 320, "validation": 80, "test": 80}
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_LENGTH = 128  # longest tokenised input the demo models accept

# Model folders written by build_demo_models, and the two pairs of the study they stand for.
DEMO_MODELS: tuple[str, ...] = ("teacher-bert", "student-distilbert", "teacher-xlmr", "student-xlmr")
DEMO_PAIRS: dict[str, tuple[str, str]] = {
    "matching": ("teacher-bert", "student-distilbert"),
    "incompatible": ("teacher-xlmr", "student-xlmr"),
}
STUDENT_LAYERS: tuple[int, ...] = (0, 2)  # teacher layers the matching student is made of (SKIP, k=2)

# ---------------------------------------------------------------------------------------------
# Made-up languages: the same concepts, different word forms per language, fixed by the seed.

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "dr", "kl", "pl", "st", "tr", "sch", "sk", "gr", "fl", "ch", "j")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "au", "ou", "ie", "y", "oo", "ee")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "k", "t", "nd", "st", "rt", "ng")

_COUNTS = {"noun": 32, "verb": 14, "adj": 12, "first": 16, "last": 16, "org": 14, "org_suffix": 4,
           "loc": 16, "loc_suffix": 3, "misc": 10}
_FUNCTION = ("det", "in", "with", "by", "aux", "neg")


@dataclass(frozen=True)
class Lexicon:
    """One made-up language: content words with a synonym each, names per entity type, function words."""

    lang: str
    nouns: tuple[tuple[str, str], ...]
    verbs: tuple[tuple[str, str], ...]
    adjs: tuple[tuple[str, str], ...]
    names: Mapping[str, tuple[str, ...]]  # first, last, org, org_suffix, loc, loc_suffix, misc
    fn: Mapping[str, str]  # function words
    verb_final: bool  # word order: subject object verb


def make_lexicon(lang: str, seed: int) -> Lexicon:
    """The language's vocabulary, a pure function of (lang, seed)."""
    rng = random.Random(f"transmod-demo-lexicon-{seed}-{lang}")
    onsets, vowels, codas = rng.sample(_ONSETS, 14), rng.sample(_VOWELS, 7), rng.sample(_CODAS, 8)
    used: set[str] = set()

    def word(syllables: int) -> str:
        while True:
            form = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables))
            if form not in used:
                used.add(form)
                return form

    fn = {name: word(1) for name in _FUNCTION}
    pairs = {kind: tuple((word(2), word(rng.choice((2, 3)))) for _ in range(_COUNTS[kind]))
             for kind in ("noun", "verb", "adj")}
    names = {kind: tuple(word(rng.choice((2, 3))).capitalize() for _ in range(_COUNTS[kind]))
             for kind in ("first", "last", "org", "org_suffix", "loc", "loc_suffix", "misc")}
    return Lexicon(lang, pairs["noun"], pairs["verb"], pairs["adj"], names, fn, verb_final=rng.random() < 0.5)


# ---------------------------------------------------------------------------------------------
# Clauses: a fact is rendered as (word, tag) pairs; tags are BIO entity types or "O".

Phrase = list[tuple[str, str]]


def _entity(words: Sequence[str], kind: str) -> Phrase:
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def _person(lex: Lexicon, rng: random.Random) -> Phrase:
    words = [rng.choice(lex.names["first"])]
    if rng.random() < 0.7:
        words.append(rng.choice(lex.names["last"]))
    return _entity(words, "PER")


def _org(lex: Lexicon, rng: random.Random) -> Phrase:
    words = [rng.choice(lex.names["org"])]
    if rng.random() < 0.5:
        words.append(rng.choice(lex.names["org_suffix"]))
    return _entity(words, "ORG")


def _loc(lex: Lexicon, rng: random.Random) -> Phrase:
    words = [rng.choice(lex.names["loc"])]
    if rng.random() < 0.25:
        words.append(rng.choice(lex.names["loc_suffix"]))
    return _entity(words, "LOC")


def _noun_phrase(lex: Lexicon, noun: str, adj: str | None = None, misc: Sequence[str] = ()) -> Phrase:
    phrase = [(lex.fn["det"], "O")]
    if misc:
        phrase += _entity(misc, "MISC")
    if adj:
        phrase.append((adj, "O"))
    return phrase + [(noun, "O")]


@dataclass
class Fact:
    """Who did what to what, where and with whom: one clause before word order is chosen."""

    subj: Phrase
    verb: str
    obj: Phrase
    loc: Phrase | None = None
    with_: Phrase | None = None
    negated: bool = False


def _render(lex: Lexicon, fact: Fact, style: str = "active") -> Phrase:
    """Word order by language and style: active, fronted (location first) or passive."""
    verb: Phrase = ([(lex.fn["neg"], "O")] if fact.negated else []) + [(fact.verb, "O")]
    extra: Phrase = [(lex.fn["with"], "O"), *fact.with_] if fact.with_ else []
    loc: Phrase = [(lex.fn["in"], "O"), *fact.loc] if fact.loc else []
    if style == "passive":
        core = fact.obj + [(lex.fn["aux"], "O")] + verb + [(lex.fn["by"], "O")] + fact.subj
    elif lex.verb_final:
        core = fact.subj + fact.obj + extra + verb
        extra = []
    else:
        core = fact.subj + verb + fact.obj
    if style == "fronted" and loc:
        out = loc + [(",", "O")] + core + extra
    else:
        out = core + extra + loc
    out = out + [(".", "O")]
    word, tag = out[0]
    return [(word[0].upper() + word[1:], tag)] + out[1:]


def _text(phrase: Phrase) -> str:
    return " ".join(w for w, _ in phrase).replace(" ,", ",").replace(" .", ".")


# ---------------------------------------------------------------------------------------------
# Tasks. Each label follows a content rule (what overlaps, what is added or negated). Tiny
# randomly initialised models learn little from a few hundred pairs by content alone, so PI and
# NLI also carry surface cues that agree with the label about 90% of the time (word order of the
# rewrite, a negation word, an added "with" phrase), as real datasets' annotation artifacts do.


def _ner_example(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    r = rng.random()
    subj = _person(lex, rng) if r < 0.5 else _org(lex, rng) if r < 0.75 else \
        _noun_phrase(lex, rng.choice(lex.nouns)[0])
    r = rng.random()
    if r < 0.4:
        obj = _noun_phrase(lex, rng.choice(lex.nouns)[0], rng.choice(lex.adjs)[0] if rng.random() < 0.5 else None)
    elif r < 0.65:
        obj = _org(lex, rng)
    elif r < 0.85:
        obj = _noun_phrase(lex, rng.choice(lex.nouns)[0], misc=rng.sample(lex.names["misc"], rng.choice((1, 1, 2))))
    else:
        obj = _person(lex, rng)
    fact = Fact(subj, rng.choice(lex.verbs)[0], obj,
                loc=_loc(lex, rng) if rng.random() < 0.6 else None,
                with_=(_person(lex, rng) if rng.random() < 0.5 else _org(lex, rng)) if rng.random() < 0.3 else None)
    phrase = _render(lex, fact, "fronted" if rng.random() < 0.3 else "active")
    labels = get_task("ner").labels
    return {"tokens": [w for w, _ in phrase], "ner_tags": [labels.index(t) for _, t in phrase], "lang": lex.lang}


def _pick(rng: random.Random, pair: tuple[str, str], p_synonym: float) -> str:
    return pair[1] if rng.random() < p_synonym else pair[0]


def _content(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    """The content words of a sentence, as indices, so a second sentence can keep or change each."""
    return {"subj": rng.randrange(_COUNTS["first"]) if rng.random() < 0.4 else -1 - rng.randrange(_COUNTS["noun"]),
            "verb": rng.randrange(_COUNTS["verb"]), "noun": rng.randrange(_COUNTS["noun"]),
            "adj": rng.randrange(_COUNTS["adj"]),
            "loc": rng.randrange(_COUNTS["loc"]) if rng.random() < 0.6 else None}


def _fact(lex: Lexicon, c: Mapping[str, Any], rng: random.Random, p_synonym: float, keep: Sequence[str] = (),
          negated: bool = False) -> Fact:
    """A fact from content indices; `keep` limits the optional parts (adj, loc) to those named."""
    if c["subj"] >= 0:
        subj = _entity([lex.names["first"][c["subj"]]], "PER")
    else:
        subj = _noun_phrase(lex, _pick(rng, lex.nouns[-1 - c["subj"]], p_synonym))
    adj = _pick(rng, lex.adjs[c["adj"]], p_synonym) if "adj" in keep else None
    loc = _entity([lex.names["loc"][c["loc"]]], "LOC") if "loc" in keep and c["loc"] is not None else None
    return Fact(subj, _pick(rng, lex.verbs[c["verb"]], p_synonym),
                _noun_phrase(lex, _pick(rng, lex.nouns[c["noun"]], p_synonym), adj), loc=loc, negated=negated)


def _changed(c: dict[str, Any], key: str, rng: random.Random) -> dict[str, Any]:
    """`c` with one content word replaced by a different one of the same kind."""
    out = dict(c)
    size = {"verb": _COUNTS["verb"], "noun": _COUNTS["noun"], "adj": _COUNTS["adj"], "loc": _COUNTS["loc"]}
    if key == "subj":
        while out["subj"] == c["subj"]:
            out["subj"] = rng.randrange(_COUNTS["first"]) if c["subj"] >= 0 else -1 - rng.randrange(_COUNTS["noun"])
    elif key == "loc" and c["loc"] is None:
        out["loc"] = rng.randrange(_COUNTS["loc"])
    else:
        while out[key] == c[key]:
            out[key] = rng.randrange(size[key])
    return out


_STYLES = ("active", "fronted", "passive")


def _pi_example(lex: Lexicon, rng: random.Random, label: int) -> dict[str, Any]:
    """Label 1: the same content, reordered (passive or fronted place), some words as synonyms;
    label 0: 2-3 content words differ, mostly in the first sentence's word order."""
    c1 = _content(lex, rng)
    c2 = dict(c1)
    if label == 0:
        for key in rng.sample(("subj", "verb", "noun", "adj", "loc"), rng.choice((2, 3))):
            c2 = _changed(c2, key, rng)
    parts = ("adj", "loc")
    s1 = _render(lex, _fact(lex, c1, rng, 0.2, parts), "active" if rng.random() < 0.9 else "fronted")
    # Rewrites change the word order more often than edits do: a surface cue, like real data has.
    style = rng.choices(_STYLES, weights=(0.0, 0.3, 0.7) if label else (0.9, 0.05, 0.05))[0]
    s2 = _render(lex, _fact(lex, c2, rng, 0.2, parts), style)
    return {"sentence1": _text(s1), "sentence2": _text(s2), "label": label}


def _nli_example(lex: Lexicon, rng: random.Random, label: int) -> dict[str, Any]:
    """Entailment: the premise with parts dropped; contradiction: negated or another subject;
    neutral: the premise's subject doing something new, often with someone new."""
    c = _content(lex, rng)
    if c["loc"] is None:  # premises always name a place, so hypotheses can drop it
        c["loc"] = rng.randrange(_COUNTS["loc"])
    premise = _render(lex, _fact(lex, c, rng, 0.0, ("adj", "loc")), rng.choice(("active", "fronted")))
    keep = [p for p in ("adj", "loc") if rng.random() < 0.4]
    negated = False
    h = c
    if label == 2:
        if rng.random() < 0.9:
            negated = True
        else:
            h = _changed(c, "subj", rng)
    elif label == 1:
        h = _changed(_changed(c, "verb", rng), "noun", rng)
    fact = _fact(lex, h, rng, 0.0, keep, negated)
    if label == 1 and rng.random() < 0.9:  # added information, as neutral hypotheses often have
        fact.with_ = _entity([rng.choice(lex.names["first"])], "PER")
    hypothesis = _render(lex, fact, "active")
    return {"premise": _text(premise), "hypothesis": _text(hypothesis), "label": label}


def _examples(task: str, lex: Lexicon, rng: random.Random, n: int) -> list[dict[str, Any]]:
    if task == "ner":
        return [_ner_example(lex, rng) for _ in range(n)]
    classes = len(get_task(task).labels)
    labels = [i % classes for i in range(n)]
    rng.shuffle(labels)
    make = _pi_example if task == "pi" else _nli_example
    rows = [make(lex, rng, label) for label in labels]
    if task == "pi":
        rows = [{"id": i, **row} for i, row in enumerate(rows)]
    return rows


def generate_task_data(task: str, langs: Sequence[str] = DEMO_LANGS, n_train: int = DEFAULT_SIZES["train"],
                       n_val: int = DEFAULT_SIZES["validation"], n_test: int = DEFAULT_SIZES["test"],
                       seed: int = 0) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows in the task's hub schema for each (lang, split): small, learnable, fixed by the seed."""
    get_task(task)
    sizes = {"train": n_train, "validation": n_val, "test": n_test}
    if any(n < 1 for n in sizes.values()):
        raise TransmodError(f"demo data sizes {sizes}: every split needs at least one example")
    rows = {}
    for lang in langs:
        lex = make_lexicon(lang, seed)
        for split in SPLITS:
            rng = random.Random(f"transmod-demo-{task}-{seed}-{lang}-{split}")
            rows[(lang, split)] = _examples(task, lex, rng, sizes[split])
    return rows


def _split_sizes(sizes: Mapping[str, int]) -> dict[str, int]:
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise TransmodError(f"demo data sizes: unknown split(s) {sorted(unknown)}; use {', '.join(SPLITS)}")
    return {**DEFAULT_SIZES, **sizes}


def _write_rows(task: str, rows: Mapping[tuple[str, str], list[dict[str, Any]]], out_dir: str | Path,
                seed: int) -> Path:
    return write_hub_folder(out_dir, task, rows, title=f"transmod demo data: {task}, synthetic, seed {seed}")


def write_demo_dataset(task: str, out_dir: str | Path, langs: Sequence[str] = DEMO_LANGS,
                       sizes: Mapping[str, int] = DEFAULT_SIZES, seed: int = 0) -> Path:
    """A hub-layout folder of demo data that `transmod.data.load_split(out_dir, task, ...)` reads."""
    n = _split_sizes(sizes)
    rows = generate_task_data(task, langs, n["train"], n["validation"], n["test"], seed)
    return _write_rows(task, rows, out_dir, seed)


def task_texts(task: str, rows: Mapping[Any, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Every sentence of the rows, for tokenizer training."""
    columns = get_task(task).text_columns
    return [" ".join(r[c]) if isinstance(r[c], list) else r[c] for split_rows in rows.values()
            for r in split_rows for c in columns]


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

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
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


# ---------------------------------------------------------------------------------------------
# Models


def _bert_to_distilbert(teacher: Any, student: Any, layers: Sequence[int]) -> None:
    """Copy the teacher's embeddings and chosen layers into the DistilBERT student, renaming weights.

    DistilBERT has no token-type embeddings; adding BERT's type-0 row to every position row makes
    the embedding outputs of single-sentence inputs identical.
    """
    import torch

    t, s = teacher.state_dict(), {}
    emb = "embeddings."
    s[emb + "word_embeddings.weight"] = t[emb + "word_embeddings.weight"]
    s[emb + "position_embeddings.weight"] = t[emb + "position_embeddings.weight"] + t[emb + "token_type_embeddings.weight"][0]
    for p in ("weight", "bias"):
        s[f"{emb}LayerNorm.{p}"] = t[f"{emb}LayerNorm.{p}"]
    names = {"attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
             "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
             "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
             "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm"}
    for i, j in enumerate(layers):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                s[f"transformer.layer.{i}.{ours}.{p}"] = t[f"encoder.layer.{j}.{theirs}.{p}"]
    with torch.no_grad():
        missing, unexpected = student.load_state_dict({k: v.clone() for k, v in s.items()}, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"BERT -> DistilBERT copy: missing {missing}, unexpected {unexpected}")


def _save_model(model: Any, tokenizer_dir: Path, out_dir: Path, with_token_types: bool) -> Path:
    from transformers import PreTrainedTokenizerFast

    model.save_pretrained(out_dir, safe_serialization=True)
    names = ["input_ids", "token_type_ids", "attention_mask"] if with_token_types else ["input_ids", "attention_mask"]
    PreTrainedTokenizerFast.from_pretrained(tokenizer_dir, model_input_names=names).save_pretrained(out_dir)
    return out_dir


def pretrain_mlm(model: Any, tokenizer: Any, texts: Sequence[str], steps: int, seed: int,
                 batch_size: int = 64, learning_rate: float = 1e-3) -> Any:
    """A short masked-language-model pre-training of a base encoder, in place.

    A frozen *random* encoder gives adapters nothing to build on (PI/NLI stay at chance); a few
    hundred MLM steps on the demo's text make the demo's modules learn, as on real pre-trained models.
    """
    import torch
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlm = AutoModelForMaskedLM.from_config(model.config)
        mlm.base_model.load_state_dict(model.state_dict(), strict=False)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        encoded = [tokenizer(t, truncation=True, max_length=MAX_LENGTH) for t in texts]
        order = torch.randperm(len(encoded)).tolist()
        optimizer = torch.optim.AdamW(mlm.parameters(), lr=learning_rate)
        mlm.train()
        for step in range(steps):
            idx = [order[(step * batch_size + i) % len(order)] for i in range(batch_size)]
            batch = collator([{k: v for k, v in encoded[i].items() if k != "token_type_ids"} for i in idx])
            loss = mlm(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        base = mlm.base_model.state_dict()
    model.load_state_dict(base, strict=False)  # keeps the model's own pooler, which MLM does not train
    return model.eval()


def build_demo_models(tokenizer_dir: str | Path, out_root: str | Path, seed: int = 0,
                      texts: Sequence[str] = (), pretrain_steps: int = 0) -> dict[str, Path]:
    """Four tiny encoders sharing the demo tokenizer, one folder each (DEMO_MODELS).

    teacher-bert (4 layers, 64 wide) -> student-distilbert (its layers 0 and 2, 64 wide): the matching pair;
    teacher-xlmr (4 layers, 64 wide) -> student-xlmr (2 layers, 48 wide, own seed): the incompatible pair.
    With `texts` and `pretrain_steps`, the BERT and both XLM-R models get a short MLM pre-training
    each (the DistilBERT student is then cut from the pre-trained BERT, as a distilled student would be).
    """
    import torch
    from transformers import (AutoModel, BertConfig, DistilBertConfig, PreTrainedTokenizerFast,
                              XLMRobertaConfig)

    tokenizer_dir, out_root = Path(tokenizer_dir), Path(out_root)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise TransmodError(f"{tokenizer_dir}: no tokenizer.json; build it first with transmod.demo.train_tokenizer")
    tok = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    xlmr_common = dict(common, max_position_embeddings=MAX_LENGTH + tok.pad_token_id + 1, type_vocab_size=1,
                       bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    configs = {
        "teacher-bert": BertConfig(**common, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=MAX_LENGTH, hidden_act="gelu"),
        "student-distilbert": DistilBertConfig(**common, dim=64, n_layers=len(STUDENT_LAYERS), n_heads=4,
                                               hidden_dim=128, max_position_embeddings=MAX_LENGTH, activation="gelu"),
        "teacher-xlmr": XLMRobertaConfig(**xlmr_common, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                         intermediate_size=128),
        "student-xlmr": XLMRobertaConfig(**xlmr_common, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                         intermediate_size=96),
    }
    seeds = {"teacher-bert": seed, "student-distilbert": seed, "teacher-xlmr": seed + 1, "student-xlmr": seed + 2}
    models = {}
    with torch.random.fork_rng(devices=[]):
        for name, config in configs.items():
            torch.manual_seed(seeds[name])
            models[name] = AutoModel.from_config(config).eval()
    if texts and pretrain_steps:
        for name in ("teacher-bert", "teacher-xlmr", "student-xlmr"):
            pretrain_mlm(models[name], tok, texts, pretrain_steps, seeds[name])
    _bert_to_distilbert(models["teacher-bert"], models["student-distilbert"], STUDENT_LAYERS)
    paths = {}
    for name, model in models.items():
        target = out_root / name
        if target.exists():
            shutil.rmtree(target)
        paths[name] = _save_model(model, tokenizer_dir, target, with_token_types=name == "teacher-bert")
    return paths


def folder_texts(folders: Mapping[str, str | Path], langs: Mapping[str, Sequence[str]]) -> list[str]:
    """Every training sentence of the demo's data folders (task -> folder), read through `load_split`."""
    from transmod.data import load_split
    from transmod.texts import TEXT_COLUMNS, examples_from_columns

    texts = []
    for task, folder in folders.items():
        for lang in langs[task]:
            rows = load_split(str(folder), task, lang, "train").to_dict()
            texts += [text for example in examples_from_columns(rows, TEXT_COLUMNS[task]) for text in example]
    return texts


def build_demo_assets(out_root: str | Path, langs: Sequence[str] = DEMO_LANGS,
                      sizes: Mapping[str, int] = DEFAULT_SIZES, seed: int = 0, vocab_size: int = 700) -> dict[str, Path]:
    """Everything the demo needs under out_root: data/<task>/, tokenizer/, models/<name>/."""
    out_root = Path(out_root)
    n = _split_sizes(sizes)
    paths: dict[str, Path] = {}
    texts: list[str] = []
    for task in ("ner", "pi", "nli"):
        rows = generate_task_data(task, langs, n["train"], n["validation"], n["test"], seed)
        paths[f"data/{task}"] = _write_rows(task, rows, out_root / "data" / task, seed)
        texts += task_texts(task, {key: r for key, r in rows.items() if key[1] == "train"})
    paths["tokenizer"] = train_tokenizer(texts, out_root / "tokenizer", vocab_size)
    for name, path in build_demo_models(paths["tokenizer"], out_root / "models", seed).items():
        paths[f"models/{name}"] = path
    return paths
