"""Convert WebDataset shards, CSV/TSV (+ rewrites), JSONL or a TFDS split to ArrayRecord files.

python -m input_pipeline.convert --format=webdataset --input='/data/cc3m/{00000..00331}.tar' --output=/data/cc3m_ar
python -m input_pipeline.convert --format=csv --input=cc3m.csv --image_root=/data/cc3m \
    --rewrite_paths=rewrite_0.txt,rewrite_1.txt,rewrite_2.txt,rewrite_3.txt --output=/data/cc3m_laclip_ar

Then train with `--config.data.name=array_record --config.data.path=<output>`. Records keep the bytes
as read (input_pipeline/array_record.py), so bad data is skipped and counted in training as it
would be on the originals. The output is written in shards of --records_per_shard examples, each
under a temporary name renamed when complete: an interrupted conversion, rerun with the same
arguments, skips the finished shards and continues with the first unfinished one.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import math
import os
import sys

import ml_collections
import numpy as np
from absl import app, flags
from PIL import Image
from tqdm import tqdm

from input_pipeline.array_record import encode_record

_FORMAT = flags.DEFINE_enum("format", None, ["webdataset", "csv", "jsonl", "tfds"], "Input format.")
_INPUT = flags.DEFINE_string(
    "input", "", "Tar shards (comma-separated files, globs, folders), a CSV/JSONL file, or the TFDS data dir."
)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the ArrayRecord files.")
_IMAGE_ROOT = flags.DEFINE_string(
    "image_root", "", "Folder of relative image paths (CSV/JSONL); '' = the file's folder."
)
_IMAGE_COLUMN = flags.DEFINE_string("image_column", "", "CSV header name, JSONL key or TFDS feature path of the image.")
_CAPTION_COLUMN = flags.DEFINE_string("caption_column", "", "Same, of the caption.")
_REWRITE_PATHS = flags.DEFINE_list("rewrite_paths", [], "LaCLIP rewrite files aligned with the CSV rows.")
_TFDS_NAME = flags.DEFINE_string("tfds_name", "", "TFDS dataset name (with --format=tfds).")
_TFDS_SPLIT = flags.DEFINE_string("tfds_split", "train", "TFDS split.")
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 10_000, "Examples per output file.")
_THREADS = flags.DEFINE_integer("threads", 8, "Reader threads (reads are I/O bound).")


def shard_name(shard: int, count: int) -> str:
    return f"part-{shard:05d}-of-{count:05d}.array_record"


def convert(
    raw_source, output: str, *, description: dict, records_per_shard: int = 10_000, threads: int = 8
) -> list[str]:
    """Writes every example of `raw_source` to ArrayRecord shards in `output`; returns their paths in order.

    Finished shards of an earlier run with the same `description` are kept, not rewritten.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    os.makedirs(output, exist_ok=True)
    total = len(raw_source)
    count = max(1, math.ceil(total / records_per_shard))
    description = json.loads(json.dumps({**description, "examples": total, "records_per_shard": records_per_shard}))
    manifest = os.path.join(output, "conversion.json")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            if json.load(f) != description:
                raise ValueError(
                    f"{output} holds a conversion of other input or settings (see {manifest}); "
                    "pass a new --output or the same arguments as before."
                )
    else:
        with open(manifest, "w", encoding="utf-8") as f:
            json.dump(description, f, indent=2)
    for name in os.listdir(output):
        if name.endswith(".tmp"):  # a shard whose writing was interrupted
            os.remove(os.path.join(output, name))

    paths = [os.path.join(output, shard_name(s, count)) for s in range(count)]
    done = [os.path.exists(p) for p in paths]
    finished = sum(min(records_per_shard, total - s * records_per_shard) for s in range(count) if done[s])
    with (
        tqdm(total=total, initial=finished, unit="ex", desc="convert", dynamic_ncols=True) as progress,
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
    ):
        for shard, path in enumerate(paths):
            if done[shard]:
                continue
            tmp = f"{path}.tmp"
            writer = ArrayRecordWriter(tmp, "group_size:1")
            indices = range(shard * records_per_shard, min(total, (shard + 1) * records_per_shard))
            for record in pool.map(_record, [raw_source] * len(indices), indices):
                writer.write(record)
                progress.update(1)
            writer.close()
            os.replace(tmp, path)
    return paths


def _record(raw_source, index: int) -> bytes:
    raw = raw_source.raw(index)
    if "skipped" in raw:
        return b""  # does not parse: training skips it as a malformed record, and counts it
    image = raw["image"]
    if isinstance(image, np.ndarray):  # decoded pixels (some TFDS features): stored losslessly
        buf = io.BytesIO()
        Image.fromarray(image.squeeze()).save(buf, "PNG")
        image = buf.getvalue()
    return encode_record(image, raw["caption"], raw.get("rewrites", ()))


def main(argv) -> None:
    del argv
    from input_pipeline.sources import open_raw_source

    data = ml_collections.ConfigDict(
        dict(
            name=_FORMAT.value,
            path=_INPUT.value,
            image_root=_IMAGE_ROOT.value,
            image_column=_IMAGE_COLUMN.value,
            caption_column=_CAPTION_COLUMN.value,
            rewrite_paths=tuple(_REWRITE_PATHS.value),
            tfds_name=_TFDS_NAME.value,
            tfds_split=_TFDS_SPLIT.value,
        )
    )
    try:
        raw_source = open_raw_source(data)
        paths = convert(
            raw_source,
            _OUTPUT.value,
            description=data.to_dict(),
            records_per_shard=_RECORDS_PER_SHARD.value,
            threads=_THREADS.value,
        )
    except ValueError as e:  # ConfigError and DataFileError included
        sys.exit(f"error: {e}")
    print(f"{len(raw_source)} examples in {len(paths)} files under {os.path.abspath(_OUTPUT.value)}; train with "
          f"--config.data.name=array_record --config.data.path={os.path.abspath(_OUTPUT.value)}")  # fmt: skip


if __name__ == "__main__":
    flags.mark_flags_as_required(["format", "output"])
    app.run(main)
