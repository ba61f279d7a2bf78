"""The demo's made-up languages: lexicons, sentences and task data in the hub schemas.

The study's tasks (NER, PI, NLI) and three tasks of the kind a user declares in the config
(`DEMO_TASKS`): part-of-speech tags (17 UPOS labels), the topic of a sentence (what its subject is), and a
cloze for decoder LLMs (a multiple-choice task: which of three words ends the sentence).

Small but learnable: entities, paraphrases and entailments follow rules a tiny model picks up in
a few epochs, from a seed, so the demo and the tests need nothing from the hub.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError
from transmod.train.data import write_hub_folder
from transmod.train.tasks import CHOICE, SEQUENCE, SPLITS, TOKEN, Task, declare_task, get_task

DEMO_LANGS: tuple[str, ...] = ("en", "de")
DEFAULT_SIZES: dict[str, int] = {"train": 320, "validation": 80, "test": 80}

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


def _sentence(lex: Lexicon, rng: random.Random) -> tuple[Phrase, str]:
    """A sentence with entities, and what its subject is (person, organisation or thing)."""
    r = rng.random()
    subject = "person" if r < 0.5 else "organisation" if r < 0.75 else "thing"
    if subject == "person":
        subj = _person(lex, rng)
    elif subject == "organisation":
        subj = _org(lex, rng)
    else:
        subj = _noun_phrase(lex, rng.choice(lex.nouns)[0])
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
    return _render(lex, fact, "fronted" if rng.random() < 0.3 else "active"), subject


def _ner_example(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    phrase, _ = _sentence(lex, rng)
    labels = get_task("ner").labels
    return {"tokens": [w for w, _ in phrase], "ner_tags": [labels.index(t) for _, t in phrase], "lang": lex.lang}


UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")  # Universal Dependencies' 17 part-of-speech tags
_FUNCTION_POS = {"det": "DET", "in": "ADP", "with": "ADP", "by": "ADP", "aux": "AUX", "neg": "PART"}


def _pos_tags(lex: Lexicon) -> dict[str, str]:
    """Word form -> UPOS tag, from the lexicon's word classes."""
    tags = {form: "NOUN" for pair in lex.nouns for form in pair}
    tags |= {form: "VERB" for pair in lex.verbs for form in pair}
    tags |= {form: "ADJ" for pair in lex.adjs for form in pair}
    tags |= {form: "PROPN" for names in lex.names.values() for form in names}
    tags |= {form: _FUNCTION_POS[name] for name, form in lex.fn.items()}
    return tags | {",": "PUNCT", ".": "PUNCT"}


def _pos_example(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    phrase, _ = _sentence(lex, rng)
    tags = _pos_tags(lex)
    words = [w for w, _ in phrase]
    return {"tokens": words, "upos": [UPOS.index(tags.get(w, tags.get(w.lower(), "X"))) for w in words]}


TOPICS = ("person", "organisation", "thing")


def _topic_example(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    phrase, subject = _sentence(lex, rng)
    return {"text": _text(phrase), "label": TOPICS.index(subject)}


def _cloze_example(lex: Lexicon, rng: random.Random) -> dict[str, Any]:
    """A sentence without its last word, and three words that might end it: its own, and the last words of two
    other sentences (endings of the same kinds, so that only the context tells; a decoder answers by likelihood)."""
    def ending() -> list[str]:
        return _text(_sentence(lex, rng)[0]).rstrip(".").split()

    words = ending()
    choices = [words[-1]]
    while len(choices) < 3:
        other = ending()[-1]
        if other not in choices:
            choices.append(other)
    rng.shuffle(choices)
    return {"question": " ".join(words[:-1]), "choices": choices, "answer": choices.index(words[-1])}


# Three tasks declared as a user would in the config (the demo generates their data; the tests run them).
DEMO_TASKS: dict[str, Task] = {
    "pos": declare_task("pos", dict(kind=TOKEN, text_columns=["tokens"], label_column="upos", metric="accuracy",
                                    labels=list(UPOS), title="Part-of-speech tagging")),
    "topic": declare_task("topic", dict(kind=SEQUENCE, text_columns=["text"], label_column="label",
                                        metric="macro_f1", labels=list(TOPICS), title="Sentence topic")),
    "cloze": declare_task("cloze", dict(kind=CHOICE, text_columns=["question"], choices_column="choices",
                                        label_column="answer", metric="accuracy", title="Cloze")),
}


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
    per_sentence = {"ner": _ner_example, "pos": _pos_example, "topic": _topic_example, "cloze": _cloze_example}
    if task in per_sentence:
        return [per_sentence[task](lex, rng) for _ in range(n)]
    classes = len(get_task(task).labels)
    labels = [i % classes for i in range(n)]
    rng.shuffle(labels)
    make = _pi_example if task == "pi" else _nli_example
    rows = [make(lex, rng, label) for label in labels]
    if task == "pi":
        rows = [{"id": i, **row} for i, row in enumerate(rows)]
    return rows


GENERATED = ("ner", "pi", "nli", "pos", "topic", "cloze")  # the tasks the demo makes data for


def demo_task(task: Task | str) -> Task:
    """The declaration of a task the demo generates data for (a config's own declaration of it, if given)."""
    name = task.name if isinstance(task, Task) else task
    if name not in GENERATED:
        raise TransmodError(f"task {name!r}: the demo generates data for {', '.join(GENERATED)} only; "
                            "give a dataset of your own for it")
    return task if isinstance(task, Task) else DEMO_TASKS.get(name) or get_task(name)


def generate_task_data(task: Task | str, langs: Sequence[str] = DEMO_LANGS, n_train: int = DEFAULT_SIZES["train"],
                       n_val: int = DEFAULT_SIZES["validation"], n_test: int = DEFAULT_SIZES["test"],
                       seed: int = 0) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows in the task's hub schema for each (lang, split): small, learnable, fixed by the seed."""
    task = demo_task(task).name
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


def write_demo_dataset(task: Task | str, out_dir: str | Path, langs: Sequence[str] = DEMO_LANGS,
                       sizes: Mapping[str, int] = DEFAULT_SIZES, seed: int = 0) -> Path:
    """A hub-layout folder of demo data that `transmod.train.data.load_split(out_dir, task, ...)` reads,
    named as `task` declares (its config and split names), with the generator's columns and label names."""
    n = _split_sizes(sizes)
    spec = demo_task(task)
    rows = generate_task_data(spec, langs, n["train"], n["validation"], n["test"], seed)
    return write_hub_folder(out_dir, spec, rows, title=f"transmod demo data: {spec.name}, synthetic, seed {seed}",
                            labels=demo_task(spec.name).labels)


def folder_texts(folders: Mapping[str, str | Path], langs: Mapping[str, Sequence[str]]) -> list[str]:
    """Every training sentence of the demo's data folders (task -> folder), read through `load_split`."""
    from transmod.align.texts import examples_from_columns
    from transmod.train.data import load_split

    texts = []
    for task, folder in folders.items():
        for lang in langs[task]:
            rows = load_split(str(folder), demo_task(task), lang, "train").to_dict()
            examples = examples_from_columns(rows, demo_task(task).text_columns, f"{folder} ({task}, {lang}, train)")
            texts += [text for example in examples for text in example]
    return texts
