"""The demo's four tiny encoders, shaped like the study's two pairs, and the demo's assets in one call.

BERT -> DistilBERT made of every second teacher layer (the matching pair); XLM-R wide -> XLM-R
narrow, trained independently (the incompatible pair). All share the demo tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transmod.atomic import atomic_path
from transmod.errors import TransmodError
from transmod_demo.tokenizer import MAX_LENGTH

# Model folders written by build_demo_models, and the two pairs of the study they stand for.
DEMO_MODELS: tuple[str, ...] = ("teacher-bert", "student-distilbert", "teacher-xlmr", "student-xlmr")
DEMO_PAIRS: dict[str, tuple[str, str]] = {
    "matching": ("teacher-bert", "student-distilbert"),
    "incompatible": ("teacher-xlmr", "student-xlmr"),
}
STUDENT_LAYERS: tuple[int, ...] = (0, 2)  # teacher layers the matching student is made of (SKIP, k=2)

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
    """The model folder, whole or not at all, with the user's umask (safetensors writes its weights 0600)."""
    from transformers import PreTrainedTokenizerFast

    names = ["input_ids", "token_type_ids", "attention_mask"] if with_token_types else ["input_ids", "attention_mask"]
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        PreTrainedTokenizerFast.from_pretrained(tokenizer_dir, model_input_names=names).save_pretrained(tmp)
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
    from transformers import (
        AutoModel,
        BertConfig,
        DistilBertConfig,
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
    )

    tokenizer_dir, out_root = Path(tokenizer_dir), Path(out_root)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise TransmodError(f"{tokenizer_dir}: no tokenizer.json; build it first with transmod_demo.tokenizer.train_tokenizer")
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
    return {name: _save_model(model, tokenizer_dir, out_root / name, with_token_types=name == "teacher-bert")
            for name, model in models.items()}
