"""WebDataset tar shards (as img2dataset writes them) as a random-access source of raw examples.

A shard holds samples as consecutive members `<key>.<ext>`: the image (`jpg`, `jpeg`, `png` or
`webp`), the caption (`txt`) and metadata (`json`). Opening scans every shard's tar headers once
(no member data is read) into compact arrays of byte offsets; an example is then read with one
`pread` per member, so any index is reachable in any order, from threads and worker processes.
The caption is `<key>.txt`, else the `caption` field of `<key>.json`; LaCLIP rewrites may sit in
the json's `rewrites` list, and the texts other methods read in its `long_caption` (DreamLIP), `raw_caption`
(ALIP) and `hard_negatives` list (DeGLA, UniME's hard negatives), and regions in its `boxes` and
`region_captions` lists (CLOC: input_pipeline/regions.py). A segmentation mask is the member `<key>.mask.png`
(DenseCLIP: input_pipeline/masks.py).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence

import numpy as np
from absl import logging

from input_pipeline.masks import WEBDATASET_MEMBER

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_FIELDS = ("image", "txt", "json", WEBDATASET_MEMBER)  # columns of the offset table


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/000123.jpg' -> ('dir/000123', 'jpg'): the key ends at the first dot of the file name (webdataset's rule)."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


class WebDatasetSource:
    """Raw examples {"image": bytes | None, "caption": bytes | None, "rewrites": tuple} of tar shards, with the
    json's texts and the "mask" bytes where present."""

    def __init__(self, shard_paths: Sequence[str]):
        self.shard_paths = tuple(shard_paths)
        tables = [_scan_shard(path) for path in self.shard_paths]
        self._shard = np.concatenate([np.full(len(t), i, np.int32) for i, t in enumerate(tables)])
        # [examples, 4 fields, (offset, size)]; size -1 marks a missing member.
        self._members = np.concatenate(tables) if tables else np.zeros((0, len(_FIELDS), 2), np.int64)
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._shard)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": {}}  # file descriptors stay in the process that opened them

    def _read(self, index: int, field: int) -> bytes | None:
        offset, size = self._members[index, field]
        if size < 0:
            return None
        shard = int(self._shard[index])
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shard_paths[shard], os.O_RDONLY)
        return os.pread(self._fds[shard], int(size), int(offset))

    def raw(self, index: int) -> dict:
        caption, rewrites, texts = self._read(index, 1), (), {}
        meta = self._read(index, 2)
        if meta is not None:
            try:
                meta = json.loads(meta)
            except ValueError:
                meta = None  # metadata is optional; a broken one only loses its fallback caption
            if isinstance(meta, dict):
                if caption is None and isinstance(meta.get("caption"), str):
                    caption = meta["caption"]
                if isinstance(meta.get("rewrites"), list):
                    rewrites = tuple(r for r in meta["rewrites"] if isinstance(r, str))
                texts = {k: meta[k] for k in ("long_caption", "raw_caption") if isinstance(meta.get(k), str)}
                if isinstance(meta.get("hard_negatives"), list):
                    texts["hard_negatives"] = tuple(n for n in meta["hard_negatives"] if isinstance(n, str))
                if isinstance(meta.get("boxes"), list) and isinstance(meta.get("region_captions"), list):
                    texts["raw_regions"] = (meta["boxes"], meta["region_captions"])
        raw = {"image": self._read(index, 0), "caption": caption, "rewrites": rewrites, **texts}
        mask = self._read(index, 3)
        if mask is not None:
            raw["mask"] = mask
        return raw

    def texts(self, index: int) -> dict:
        """The raw example without its image and mask (cheap: the tokenizer's corpus)."""
        raw = dict(self.raw(index))
        raw["image"] = None
        raw.pop("mask", None)
        return raw


def _scan_shard(path: str) -> np.ndarray:
    """int64 [samples, 4, 2]: (offset, size) of each sample's image, txt, json and mask.png member, size -1 if
    absent."""
    samples: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                field = 0 if ext in IMAGE_EXTENSIONS else _FIELDS.index(ext) if ext in _FIELDS[1:] else None
                if field is None:
                    continue
                row = samples.setdefault(key, np.full((len(_FIELDS), 2), -1, np.int64))
                if row[field, 1] < 0:  # the first image of a sample wins
                    row[field] = (member.offset_data, member.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        # A truncated shard keeps the samples before the damage; their last member may still be cut
        # short, which decoding then counts as a corrupt image.
        logging.warning("Shard %s is damaged after %d samples (%s); training on those.", path, len(samples), e)
    return np.stack(list(samples.values())) if samples else np.zeros((0, len(_FIELDS), 2), np.int64)
