"""Shared fixtures: tiny real models and a tokenizer, built offline from configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "profiles" / "demo" / "demo-config.yaml"

WORDS = (
    "the a cat dog sat on mat house red blue green big small runs walks sees eats bird tree river "
    "city paris berlin anna tom bank company john maria fast slow under over near far old new"
).split()
SENTENCES = [
    " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 6)) for i in range(60)
]

HIDDEN = 24


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def make_config(model_type: str, layers: int, hidden: int = HIDDEN, heads: int = 2):
    from transformers import (
        AlbertConfig,
        BertConfig,
        BertGenerationConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        XLMRobertaConfig,
    )

    vocab = 5 + len(WORDS)
    if model_type == "albert":  # factorised embeddings (narrower than the hidden size), one layer at every depth
        return AlbertConfig(vocab_size=vocab, embedding_size=hidden // 2, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=40, max_position_embeddings=64)
    if model_type == "bert-generation":
        return BertGenerationConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                    intermediate_size=40, max_position_embeddings=64)
    if model_type == "bert":
        return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=40, max_position_embeddings=64)
    if model_type == "xlm-roberta":
        return XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=40, max_position_embeddings=64, pad_token_id=0)
    if model_type == "distilbert":
        return DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=40,
                                max_position_embeddings=64)
    if model_type == "electra":
        return ElectraConfig(vocab_size=vocab, embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=40, max_position_embeddings=64)
    if model_type == "deberta-v2":  # relative attention with its own position projections, as DeBERTa-v3 has
        return DebertaV2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=40, max_position_embeddings=64, type_vocab_size=2,
                               relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=32,
                               position_buckets=16, norm_rel_ebd="layer_norm", share_att_key=False)
    raise ValueError(model_type)


def make_model(model_type: str, layers: int, hidden: int = HIDDEN, seed: int = 0):
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_config(make_config(model_type, layers, hidden))
    return model.eval()


def save_model(model, path) -> str:
    model.save_pretrained(path, safe_serialization=True)
    make_tokenizer().save_pretrained(path)
    return str(path)


def randomize_module(model, name: str, seed: int = 1) -> None:
    """Give a freshly added module non-trivial weights so that it changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if f".{name}." in key:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def add_module(model, peft: str, name: str = "task", bottleneck: int = 6, seed: int = 1):
    import adapters
    from adapters import LoRAConfig, SeqBnConfig

    adapters.init(model)
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    if peft == "adapter":
        model.add_adapter(name, config=SeqBnConfig(reduction_factor=hidden / bottleneck))
    else:
        model.add_adapter(name, config=LoRAConfig(r=4, alpha=4))
    randomize_module(model, name, seed)
    model.set_active_adapters(name)
    return model


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def _albert_hidden_axes(name: str) -> tuple[int, ...]:
    """ALBERT's: its embeddings live in their own narrower space, which a projection maps into the hidden one."""
    if name.startswith("embeddings."):
        return ()
    if "embedding_hidden_mapping_in" in name or "attention.dense" in name or "ffn_output" in name:
        return (0,)
    if name.endswith(("ffn.weight", "query.weight", "key.weight", "value.weight")):
        return (1,)
    if name.endswith(("ffn.bias", "query.bias", "key.bias", "value.bias")):
        return ()
    if "LayerNorm" in name or "layer_norm" in name:
        return (0,)
    if name.startswith("pooler."):
        return (0, 1) if name.endswith("weight") else (0,)
    raise AssertionError(f"unhandled parameter {name}")


def _hidden_axes(name: str, model_type: str) -> tuple[int, ...]:
    """Axes of an encoder's parameter that run along the residual stream (hidden size)."""
    if model_type == "albert":
        return _albert_hidden_axes(name)
    if ("embeddings" in name and name.endswith("_embeddings.weight")) or name.endswith("rel_embeddings.weight"):
        return (1,)
    if "LayerNorm" in name or "layer_norm" in name:
        return (0,)
    if any(k in name for k in (".query.", ".key.", ".value.", ".q_lin.", ".k_lin.", ".v_lin.", "intermediate.dense", "ffn.lin1",
                               "_proj.")):  # DeBERTa: query/key/value_proj, pos_key/pos_query_proj
        return (1,) if name.endswith("weight") else ()
    if any(k in name for k in ("attention.output.dense", "out_lin", ".output.dense", "ffn.lin2")):
        return (0,)
    if "pooler.dense" in name:
        return (0, 1) if name.endswith("weight") else (0,)
    raise AssertionError(f"unhandled parameter {name}")


def permute_hidden(model, perm: torch.Tensor):
    """The same network with its hidden dimensions permuted: an exact symmetry (h_student = h_teacher[perm])."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            for axis in _hidden_axes(name, model.config.model_type):
                param.copy_(param.index_select(axis, perm))
    return model


def run_snakemake(args, cwd, timeout: int) -> subprocess.CompletedProcess:
    """`python -m snakemake ARGS` in its own session; on timeout kill it and cancel its SLURM jobs."""
    cmd = [sys.executable, "-m", "snakemake", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake ignores SIGTERM while it waits for jobs
        out, _ = proc.communicate()
        ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
        pytest.fail(f"snakemake timed out after {timeout}s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def snakemake(*args, cwd=REPO, check=True, timeout=1800) -> subprocess.CompletedProcess:
    """The project's Snakefile, run in `cwd`; its stdout holds stdout and stderr."""
    done = run_snakemake(["-s", REPO / "Snakefile", *args], cwd, timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{done.stdout[-8000:]}")
    return done


def job_counts(output: str) -> dict[str, int]:
    """Per-rule job counts from a dry-run's 'Job stats' table."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0] if "Job stats:" in output else ""
    counts = {}
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run(*args, cwd) -> dict[str, int]:
    done = snakemake("-n", "--profile", REPO / "profiles" / "demo", *args, cwd=cwd)
    return job_counts(done.stdout)


def slurm_cluster() -> tuple[bool, str]:
    """Whether the test cluster of tests/slurm/start_cluster.sh is up, and if not, why."""
    if shutil.which("sbatch") is None:
        return False, "sbatch not on PATH (run tests/slurm/start_cluster.sh as root)"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"sinfo failed: {exc}"
    if res.returncode != 0:
        return False, f"SLURM cluster not up (sinfo: {res.stderr.strip()})"
    states = res.stdout.split()
    if not any(s.rstrip("*~#") in {"idle", "mix", "alloc", "comp"} for s in states):
        return False, f"no usable SLURM node (sinfo states: {states})"
    return True, ""


SLURM_UP, SLURM_WHY = slurm_cluster()
# .ci/run sets TRANSMOD_CI=1 after starting the cluster and installing Chromium: what CI provides must be
# there, so that its tests fail instead of being skipped in silence.
REQUIRED_ON_CI = os.environ.get("TRANSMOD_CI") == "1"
if REQUIRED_ON_CI and not SLURM_UP:
    raise pytest.UsageError(f"TRANSMOD_CI=1 but the test cluster is not usable: {SLURM_WHY}")
DEMO_RUN_LOG = "demo-run.log"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """One full demo run with the README's local profile in a scratch working directory, its snakemake
    output in DEMO_RUN_LOG. (test_slurm.py runs one of its grid cells through the test cluster.)"""
    work = tmp_path_factory.mktemp("demo")
    (work / "profiles").symlink_to(REPO / "profiles")
    done = snakemake("--profile", REPO / "profiles" / "demo", cwd=work, timeout=1800)
    (work / DEMO_RUN_LOG).write_text(done.stdout)
    return work
