"""Your clips as folders of frames (config.data.name = 'video_folders', X-CLIP; docs/video.md).

config.data.path is a folder with one subfolder per clip. A clip's folder holds its frames as image files
(FRAME_SUFFIXES), in the order of their names (000.jpg, 001.jpg, ...), its caption in `caption.txt`, and
optionally `hard_negatives.txt`: captions false for the clip, one a line (X-CLIP's prompted term; without them
a clip adds nothing to it). Every frame is decoded and its central square resized to config.data.image_size by
the image rules of input_pipeline/cleaning.py. A clip is skipped, and counted (train/data_skipped_<kind>), when
its caption is missing or empty, it has no frames (`missing_image`), or one of its frames is tiny, corrupt or
oversized; repairs of its frames and texts are counted as for images.
"""

from __future__ import annotations

import os

import numpy as np

from input_pipeline.cleaning import Skip, clean_text, decode_image, problem_counts, skipped

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CAPTION_FILE, NEGATIVES_FILE = "caption.txt", "hard_negatives.txt"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class VideoFolderSource:
    """grain random-access source: record i is {"video": uint8 [F, S, S, 3], "caption", "hard_negatives",
    "problems"} of the i-th clip folder (by name), or a skip record; `texts(i)` the same without the frames."""

    def __init__(self, path: str, image_size: int):
        root = os.path.expanduser(path)
        self.image_size = image_size
        self.clips = sorted(
            os.path.join(root, name) for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))
        )

    def __len__(self) -> int:
        return len(self.clips)

    def texts(self, index: int) -> dict:
        """{"caption", "hard_negatives", "problems"} of clip `index`, or a skip record for a bad caption."""
        folder, repairs = self.clips[index], []
        caption = clean_text(_read(os.path.join(folder, CAPTION_FILE)), repairs)
        if not caption:
            return skipped("missing_caption" if caption is None else "empty_caption")
        negatives = (
            clean_text(line, repairs) for line in (_read(os.path.join(folder, NEGATIVES_FILE)) or b"").splitlines()
        )
        return {
            "caption": caption,
            "hard_negatives": tuple(n for n in negatives if n),
            "problems": problem_counts(repairs),
        }

    def __getitem__(self, index: int) -> dict:
        record = self.texts(index)
        if "skipped" in record:
            return record
        folder, repairs = self.clips[index], []
        frames = sorted(name for name in os.listdir(folder) if name.lower().endswith(FRAME_SUFFIXES))
        try:
            if not frames:
                raise Skip("missing_image")
            video = [decode_image(_read(os.path.join(folder, name)), self.image_size, repairs) for name in frames]
        except Skip as skip:
            return skipped(skip.kind)
        return {**record, "video": np.stack(video), "problems": record["problems"] + problem_counts(repairs)}
