"""The sample parquet format, and its reader (no torch: correlation jobs stay light).

Layout: one row per kept token with its position key (`sent`, `seq`, `start`, `end`: example,
segment of a pair and character span) and, per layer `l` and space, a column `{space}{l}` holding
each token's vector as hidden_size little-endian float32 (or bfloat16, the metadata's `dtype`) in one fixed-size
binary value (a float list column would carry parquet levels for every number and read ~5x slower). bfloat16
halves a file (a SmolLM2 token's four spaces in 30 layers: 392 KB in float32, 196 KB in bfloat16) and keeps
float32's range, at 3 significant digits: enough for the correlations and fits read from it, which average
thousands of tokens. Readers always get float32. Spaces: `h` is the
module input (the output adapter's input, or the input of self-attention query/value for LoRA);
`q`/`v` are the outputs of query/value (LoRA only, for the output-space alignment of B). A decoder
LLM's LoRA file holds `h`, `f`, `a` and `m` (`transmod.modules.architectures.DECODER_SITES`), each as wide
as its space; its adapter file holds `h` alone, the layer's un-normed output that the adapter reads. The file's metadata key `transmod` holds the model, hook point, layers, spaces, hidden size
(and a decoder's head and MLP sizes) and token count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transmod.errors import TransmodError
from transmod.modules.architectures import DECODER_SIZES, ModelShape, space_width

META_KEY = b"transmod"
# What every sample file's metadata records: its model and hook point, and what it was sampled from
# (`data`: a fingerprint of the examples; `tokenizer`; `max_length`), so that files of different data never pair.
META_FIELDS = ("model", "model_type", "hook", "spaces", "num_layers", "hidden_size", "num_tokens", "data", "tokenizer",
               "max_length")
KEY_FIELDS = [("sent", pa.int32()), ("seq", pa.int8()), ("start", pa.int32()), ("end", pa.int32()), ("token", pa.string())]
DTYPES = {"float32": np.dtype("<f4"), "bfloat16": np.dtype("<u2")}  # bfloat16: float32's upper 16 bits


def check_dtype(dtype: str, name: str) -> str:
    """`dtype`, refused unless one of `DTYPES`; `name` says where it was given."""
    if dtype not in DTYPES:
        raise TransmodError(f"{name} {dtype!r}: give one of {', '.join(DTYPES)}")
    return dtype


def vector_type(hidden_size: int, dtype: str = "float32") -> pa.DataType:
    return pa.binary(DTYPES[dtype].itemsize * hidden_size)


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bits, rounded to nearest even as torch rounds; inf stays inf, and NaN NaN (the
    rounding would carry some NaNs past the top bit, to zero: readers must see a NaN to refuse it)."""
    values = np.ascontiguousarray(values, dtype="<f4")
    bits = values.view("<u4")
    return np.where(np.isnan(values), 0x7FC0, (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def to_vectors(values: np.ndarray, dtype: str = "float32") -> pa.FixedSizeBinaryArray:
    """(rows x hidden) floats as one fixed-size binary column: float32 input as it is (no copy), or rounded to a
    bfloat16 copy."""
    values = to_bfloat16(values) if dtype == "bfloat16" else np.ascontiguousarray(values, dtype=DTYPES[dtype])
    return pa.FixedSizeBinaryArray.from_buffers(vector_type(values.shape[1], dtype), len(values),
                                                [None, pa.py_buffer(values)])


def from_vectors(array: pa.FixedSizeBinaryArray, dtype: str = "float32") -> np.ndarray:
    """The (rows x hidden) float32 values of a vector column (a view of float32, a copy of bfloat16)."""
    width, value = array.type.byte_width, DTYPES[dtype]
    flat = np.frombuffer(array.buffers()[1], dtype=value, count=len(array) * width // value.itemsize,
                         offset=array.offset * width)
    if dtype == "bfloat16":
        flat = (flat.astype("<u4") << 16).view("<f4")
    return flat.reshape(len(array), width // value.itemsize)


class SampleWriter:
    """Appends rows batch by batch; `finish` adds the metadata that makes the file a sample file."""

    def __init__(self, path: str | Path, columns: Sequence[str], width: int | Mapping[str, int],
                 compression: str | dict = "none", dtype: str = "float32"):
        """`width`: every column's, or per column (a decoder's spaces differ in width); `dtype`: of `DTYPES`,
        recorded by `finish`."""
        self.dtype = check_dtype(dtype, f"{path}: dtype")
        widths = width if isinstance(width, Mapping) else dict.fromkeys(columns, width)
        self.schema = pa.schema(KEY_FIELDS + [(c, vector_type(widths[c], dtype)) for c in columns])
        # Dictionary encoding and compression only slow down float activations.
        self._writer = pq.ParquetWriter(path, self.schema, use_dictionary=False, compression=compression)

    def write(self, keys: Mapping[str, object], states: Mapping[str, np.ndarray]) -> None:
        columns = {c: to_vectors(v, self.dtype) for c, v in states.items()}
        self._writer.write_table(pa.table({**keys, **columns}, schema=self.schema))

    def finish(self, meta: dict) -> None:
        self._writer.add_key_value_metadata({META_KEY: json.dumps({**meta, "dtype": self.dtype}).encode()})

    def __enter__(self) -> "SampleWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


@dataclass
class SampleFile:
    """A sample parquet, validated on open; streams its columns in batches."""

    path: Path
    meta: dict
    row_groups: tuple[int, ...]  # rows per row group: two files cut alike stream matching batches as they are

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
        resample = "re-sample it with `transmod sample`"
        try:
            meta = json.loads(raw)
            missing = [k for k in META_FIELDS if k not in meta] if isinstance(meta, dict) else ["all"]
        except ValueError:
            raise TransmodError(f"{path}: the `transmod` metadata is damaged (not JSON); {resample}") from None
        if missing:
            raise TransmodError(f"{path}: the `transmod` metadata lacks {', '.join(missing)} (damaged, or written by "
                                f"an older transmod); {resample}")
        dtype = meta.setdefault("dtype", "float32")  # files written before bfloat16 have no dtype: float32
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise TransmodError(f"{path}: the `transmod` metadata's dtype is {dtype!r}, not one of {', '.join(DTYPES)}; "
                                f"{resample}")
        if meta["num_tokens"] == 0 or pfile.metadata.num_rows == 0:
            raise TransmodError(f"{path}: the sample file holds no tokens; sample more text")
        if pfile.metadata.num_rows != meta["num_tokens"]:
            raise TransmodError(f"{path}: {pfile.metadata.num_rows} rows but the metadata says {meta['num_tokens']} "
                                f"tokens: the file was cut or altered; {resample}")
        names = set(pfile.schema_arrow.names)
        for space in meta["spaces"]:
            for l in range(meta["num_layers"]):
                column = f"{space}{l}"
                try:
                    width = space_width(meta, space)
                except KeyError as exc:
                    raise TransmodError(f"{path}: the `transmod` metadata lacks {exc} for space {space}; {resample}") from None
                if column not in names or pfile.schema_arrow.field(column).type != vector_type(width, dtype):
                    raise TransmodError(
                        f"{path}: column {column} is missing or not {width} {dtype} values per "
                        f"token as the metadata says; {resample}"
                    )
        footer = pfile.metadata
        return cls(path, meta, tuple(footer.row_group(i).num_rows for i in range(footer.num_row_groups)))

    @property
    def dtype(self) -> str:
        return self.meta["dtype"]

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.meta["hidden_size"])

    @property
    def num_tokens(self) -> int:
        return int(self.meta["num_tokens"])

    def width(self, space: str) -> int:
        return space_width(self.meta, space)

    def describe(self) -> dict:
        """The model's shape as alignment and correlation files record it."""
        return {k: self.meta[k] for k in ("model", "model_type", "num_layers", "hidden_size", *DECODER_SIZES)
                if k in self.meta}

    def check_model(self, shape: ModelShape) -> None:
        """Refuse samples that do not come from a model of this shape."""
        mine = {k: v for k, v in self.describe().items() if k not in ("model", "model_type")}
        theirs = {k: v for k, v in shape.describe().items() if k not in ("model", "model_type")}
        if mine != theirs and (self.num_layers, self.hidden_size) == (shape.num_layers, shape.hidden_size):
            raise TransmodError(f"{self.path}: samples come from a model of sizes {mine} but {shape.name} has {theirs}; "
                                f"sample that model with `transmod sample --model {shape.name}`")
        if mine != theirs:
            raise TransmodError(
                f"{self.path}: samples have {self.num_layers} layers x {self.hidden_size} dims but {shape.name} has "
                f"{shape.num_layers} x {shape.hidden_size}; sample that model with `transmod sample --model {shape.name}`"
            )

    @property
    def num_rows(self) -> int:
        return sum(self.row_groups)

    def keys(self) -> np.ndarray:
        """One int64 per row identifying the token's text position, for matching across tokenizers."""
        t = pq.read_table(self.path, columns=["sent", "seq", "start", "end"])
        sent, seq, start, end = (t.column(c).to_numpy().astype(np.int64) for c in ("sent", "seq", "start", "end"))
        if end.max(initial=0) >= 1 << 20:
            raise TransmodError(f"{self.path}: a text is longer than {1 << 20} characters; split it")
        return (((sent << 2) | (seq + 1)) << 40) | (start << 20) | end

    def iter_columns(self, columns: Sequence[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Stream (rows x hidden) float32 arrays per column; refuses NaN/inf with the file and column."""
        # No read-ahead (it would hold every row group); a buffered stream reads ~2x faster than unbuffered.
        pfile = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)
        for batch in pfile.iter_batches(batch_size=batch_size, columns=list(columns)):
            out = {}
            for name in columns:
                column = batch.column(name)
                values = from_vectors(column, self.dtype)
                if column.null_count or not np.isfinite(values).all():
                    raise TransmodError(f"{self.path}: column {name} holds NaN or inf values; re-sample from a healthy model")
                out[name] = values
            yield out
