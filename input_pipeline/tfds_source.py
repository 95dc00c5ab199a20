"""TFDS datasets prepared in the array_record file format, read without TensorFlow.

`tfds.data_source` gives random access; images are read undecoded (`SkipDecoding`) so the cleaning
rules decode them. Columns are '/'-separated feature paths: for coco_captions, `image` and
`captions/text`. A caption column that holds several captions (COCO has five per image) gives the
first as the caption and the others as rewrites, so `text_augmentation=laclip` samples among them.
Prepare a dataset once with `tfds build <name> --file_format=array_record --data_dir=<dir>`.
"""

from __future__ import annotations

import numpy as np

from input_pipeline.tabular import DataFileError


class TfdsSource:
    """Raw examples {"image": bytes | array | None, "caption", "rewrites"} of one split of a TFDS dataset."""

    def __init__(self, name: str, split: str, *, data_dir: str = "", image_column: str = "", caption_column: str = ""):
        import tensorflow_datasets as tfds  # slow to import: only when this source is used

        self.image_path = (image_column or "image").split("/")
        self.caption_path = (caption_column or "caption").split("/")
        decoders: dict = tfds.decode.SkipDecoding()
        for key in reversed(self.image_path):
            decoders = {key: decoders}
        try:
            self._data = tfds.data_source(name, split=split, data_dir=data_dir or None, decoders=decoders)
        except tfds.core.registered.DatasetNotFoundError:
            raise DataFileError(
                f"TFDS dataset {name!r} is not prepared in {data_dir or 'the default data dir'}; run `tfds build "
                f"{name} --file_format=array_record --data_dir=<dir>` and set config.data.path to that dir."
            ) from None
        except ValueError as e:  # unknown split, or files in a format without random access
            raise DataFileError(
                f"TFDS dataset {name!r} cannot be read as split {split!r} ({str(e).splitlines()[0]}); fix "
                "config.data.tfds_split, or rebuild it with --file_format=array_record."
            ) from None

    def __len__(self) -> int:
        return len(self._data)

    def _example(self, index: int, with_image: bool) -> dict:
        example = self._data[index]
        image = _get(example, self.image_path) if with_image else None
        captions = _get(example, self.caption_path)
        if isinstance(captions, (list, tuple, np.ndarray)) and not isinstance(captions, (str, bytes)):
            captions = list(captions)
            caption, rewrites = (captions[0], tuple(captions[1:])) if captions else (None, ())
        else:
            caption, rewrites = captions, ()
        return {"image": image, "caption": _text(caption), "rewrites": tuple(_text(r) or b"" for r in rewrites)}

    def raw(self, index: int) -> dict:
        return self._example(index, with_image=True)

    def texts(self, index: int) -> dict:
        return self._example(index, with_image=False)


def _get(example, path: list[str]):
    for key in path:
        if not isinstance(example, dict) or key not in example:
            return None
        example = example[key]
    return example


def _text(value) -> str | bytes | None:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value if isinstance(value, (str, bytes)) else None
