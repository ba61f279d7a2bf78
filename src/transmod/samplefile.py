"""The sample parquet format, and its reader (no torch: correlation jobs stay light).

Layout: one row per kept token with its position key (`sent`, `seq`, `start`, `end`: example,
segment of a pair and character span) and, per layer `l` and space, a fixed-size float32 list
column `{space}{l}`. Spaces: `h` is the module input (the output adapter's input, or the input of
self-attention query/value for LoRA); `q`/`v` are the outputs of query/value (LoRA only, for the
output-space alignment of B). The file's metadata key `transmod` holds the model, hook point,
layers, spaces, hidden size and token count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transmod.architectures import ModelShape
from transmod.errors import TransmodError

PEFT_TYPES = ("adapter", "lora")
META_KEY = b"transmod"


@dataclass
class SampleFile:
    """A sample parquet, validated on open; streams its columns in batches."""

    path: Path
    meta: dict

    @classmethod
    def open(cls, path: str | Path) -> "SampleFile":
        path = Path(path)
        if not path.is_file():
            raise TransmodError(f"{path}: no such sample file; run `transmod sample` first")
        try:
            pfile = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise TransmodError(f"{path}: not a readable parquet file ({exc})") from None
        raw = (pfile.metadata.metadata or {}).get(META_KEY)
        if raw is None:
            raise TransmodError(f"{path}: not a transmod sample file (no `transmod` metadata); write it with `transmod sample`")
        meta = json.loads(raw)
        if meta["num_tokens"] == 0 or pfile.metadata.num_rows == 0:
            raise TransmodError(f"{path}: the sample file holds no tokens; sample more text")
        for space in meta["spaces"]:
            for l in range(meta["num_layers"]):
                field = pfile.schema_arrow.field(f"{space}{l}")
                if field.type.list_size != meta["hidden_size"]:
                    raise TransmodError(
                        f"{path}: column {space}{l} has {field.type.list_size} dims but the metadata says "
                        f"{meta['hidden_size']}; re-sample the file"
                    )
        return cls(path, meta)

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.meta["hidden_size"])

    @property
    def num_tokens(self) -> int:
        return int(self.meta["num_tokens"])

    def check_model(self, shape: ModelShape) -> None:
        """Refuse samples that do not come from a model of this shape."""
        if (self.num_layers, self.hidden_size) != (shape.num_layers, shape.hidden_size):
            raise TransmodError(
                f"{self.path}: samples have {self.num_layers} layers x {self.hidden_size} dims but {shape.name} has "
                f"{shape.num_layers} x {shape.hidden_size}; sample that model with `transmod sample --model {shape.name}`"
            )

    def keys(self) -> np.ndarray:
        """One int64 per row identifying the token's text position, for matching across tokenizers."""
        t = pq.read_table(self.path, columns=["sent", "seq", "start", "end"])
        sent, seq, start, end = (t.column(c).to_numpy().astype(np.int64) for c in ("sent", "seq", "start", "end"))
        if end.max(initial=0) >= 1 << 20:
            raise TransmodError(f"{self.path}: a text is longer than {1 << 20} characters; split it")
        return (((sent << 2) | (seq + 1)) << 40) | (start << 20) | end

    def iter_columns(self, columns: Sequence[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Stream (rows x hidden) float32 arrays per column; refuses NaN/inf with the file and column."""
        pfile = pq.ParquetFile(self.path, pre_buffer=False)  # read-ahead would hold every row group
        for batch in pfile.iter_batches(batch_size=batch_size, columns=list(columns)):
            out = {}
            for name in columns:
                values = batch.column(name).flatten().to_numpy(zero_copy_only=False).reshape(len(batch), -1)
                if not np.isfinite(values).all():
                    raise TransmodError(f"{self.path}: column {name} holds NaN or inf values; re-sample from a healthy model")
                out[name] = values
            yield out
