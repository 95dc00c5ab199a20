"""JPEG decode + random resized crop to 224: this repo's input pipeline against a plain PIL loop, same run.

python benchmarks/input_pipeline.py [--images=256] [--side=640]

Test images: random crops of scikit-learn's two sample photos (real JPEGs), re-encoded at quality 90
with the given longer side (640 ~ CC3M originals; 256 ~ img2dataset's resized shards), in a WebDataset
shard. Rows:
- `PIL loop`: Image.open + convert("RGB") + one random-resized-crop resize to 224 (the torchvision recipe);
- `ours, decode`: cleaning.decode_image (JPEG `draft` reduction, central square to 224), what
  evaluation reads;
- `ours, decode + crop`: what training does: decode at the image's aspect (`square=False`: `draft`,
  then an integer box reduction), then transforms.random_resized_crop to 224, the one resize;
- `grain, N workers`: make_train_iterator over the shard (tiled to a million records, `Tiled`) as
  training reads it: DecodedSource with square=False; decode, crop 0.5-1, tokenise, batch 32 uint8
  images (the train step normalises them on the device, training/train_step.normalize_pixels), with
  2 reader threads per process (data.read_threads' default for files) and once inline (0 threads).
A second table times the normalisation of one batch of 128 such crops: on the host
(transforms.normalize_image, as the pipeline did before 2026-11-28) against the train step's
lookup (training/train_step.normalize_pixels) and plain arithmetic, both jitted on the default device.
Rates per core are images per CPU second of all processes involved (psutil), so they stay meaningful
on a busy machine; wall-clock rates are shown beside them.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

from input_pipeline import transforms  # noqa: E402
from input_pipeline.cleaning import decode_image  # noqa: E402
from input_pipeline.decoded_source import DecodedSource  # noqa: E402
from input_pipeline.pipeline import TrainTransform, make_train_iterator  # noqa: E402
from input_pipeline.tokenizer import train_tokenizer  # noqa: E402
from input_pipeline.webdataset import WebDatasetSource  # noqa: E402

SIZE = 224
SCALE = (0.5, 1.0)


def make_jpegs(count: int, side: int, rng: np.random.Generator) -> list[bytes]:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(p) for p in load_sample_images().images]  # 427 x 640 each
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x, y, x + cw, y + ch))
        scale = side / max(crop.size)
        crop = crop.resize((round(crop.size[0] * scale), round(crop.size[1] * scale)), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pil_loop(jpeg: bytes, rng: np.random.Generator) -> np.ndarray:
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    w, h = img.size
    area = w * h * rng.uniform(*SCALE)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, np.sqrt(area * aspect)), min(h, np.sqrt(area / aspect))
    x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch)))


def ours_decode(jpeg: bytes, rng: np.random.Generator) -> np.ndarray:
    return decode_image(jpeg, SIZE, [])


def ours_decode_crop(jpeg: bytes, rng: np.random.Generator) -> np.ndarray:
    return transforms.random_resized_crop(decode_image(jpeg, SIZE, [], square=False), rng, SCALE, size=SIZE)


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def time_loops(fns: dict, jpegs: list[bytes], repeats: int) -> list[tuple[str, float, float]]:
    """(name, per-core rate, wall rate) of each loop; the loops take turns pass by pass, so that the
    machine's drift (other jobs, clock speed) spreads over all of them alike."""
    rng = np.random.default_rng(0)
    me = psutil.Process()
    cpu, wall = dict.fromkeys(fns, 0.0), dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn(jpegs[0], rng)  # warm caches
    for _ in range(repeats):
        for name, fn in fns.items():
            cpu_start, wall_start = cpu_seconds(me), time.perf_counter()
            for jpeg in jpegs:
                fn(jpeg, rng)
            cpu[name] += cpu_seconds(me) - cpu_start
            wall[name] += time.perf_counter() - wall_start
    n = repeats * len(jpegs)
    return [(name, n / cpu[name], n / wall[name]) for name in fns]


class Tiled:
    """`source` repeated to `length` records: the benchmark's few images indexed like a real dataset's
    millions. (grain's shuffle costs ~0.28 ms per index over 128 records, ~0.012 ms over 10^6.)"""

    def __init__(self, source, length: int):
        self.source, self.length = source, length

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict:
        return self.source.raw(index % len(self.source))


def time_grain(shard: str, tokenizer, workers: int, batches: int, read_threads: int = 2) -> tuple[float, float]:
    source = DecodedSource(Tiled(WebDatasetSource([shard]), 1_000_000), SIZE, square=False)
    transform = TrainTransform(tokenizer, 32, "none", SCALE, image_size=SIZE)
    it = make_train_iterator(
        source, transform, global_batch_size=32, seed=0, worker_count=workers, read_threads=read_threads
    )
    next(it)  # start-up (worker processes, first reads) is not the steady state
    me = psutil.Process()
    cpu, wall = cpu_seconds(me), time.perf_counter()
    for _ in range(batches):
        next(it)
    n = 32 * batches
    rates = n / (cpu_seconds(me) - cpu), n / (time.perf_counter() - wall)
    it.close()
    return rates


def time_normalisation(repeats: int = 5) -> list[tuple[str, float]]:
    """(path, ms per batch of 128 uint8 224 px images): host NumPy, device lookup, device arithmetic."""
    import jax
    import jax.numpy as jnp

    from training.train_step import normalize_pixels

    pixels = np.random.default_rng(0).integers(0, 256, (128, SIZE, SIZE, 3), dtype=np.uint8)
    on_device = jax.device_put(pixels)

    def arithmetic(u):
        return (u.astype(jnp.float32) / 255.0 - transforms.IMAGE_MEAN) / transforms.IMAGE_STD

    lookup, arithmetic = jax.jit(normalize_pixels), jax.jit(arithmetic)
    paths = {
        "host, NumPy (transforms.normalize_image)": lambda: transforms.normalize_image(pixels),
        "device, lookup (normalize_pixels; bit-identical)": lambda: lookup(on_device).block_until_ready(),
        "device, arithmetic (not bit-identical)": lambda: arithmetic(on_device).block_until_ready(),
    }
    rows = []
    for name, fn in paths.items():
        fn()  # compile
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        rows.append((name, (time.perf_counter() - start) / repeats * 1e3))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()

    jpegs = make_jpegs(args.images, args.side, np.random.default_rng(0))
    loops = {"PIL loop": pil_loop, "ours, decode": ours_decode, "ours, decode + crop": ours_decode_crop}
    rows = time_loops(loops, jpegs, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        from tests.real_data import write_shard

        shard = os.path.join(tmp, "bench.tar")
        write_shard(shard, [{"key": f"{i:06d}", "jpg": j, "txt": b"a photo"} for i, j in enumerate(jpegs)])
        tokenizer = train_tokenizer(["a photo of a flower", "a photo of a temple"] * 50, vocab_size=300)
        rows.append(("grain, inline (0 workers, 0 reader threads)", *time_grain(shard, tokenizer, 0, args.batches, 0)))
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append((f"grain, {workers} workers", *time_grain(shard, tokenizer, workers, args.batches)))

    base = rows[0][1]
    print(f"{args.images} JPEGs, longer side {args.side}, mean {np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| path | images/s per core (CPU time) | vs PIL loop | images/s wall clock |")
    print("|---|---|---|---|")
    for name, per_core, wall in rows:
        print(f"| {name} | {per_core:.0f} | {per_core / base:.2f}x | {wall:.0f} |")
    print()
    print("| normalise 128 images of 224 px | ms per batch |")
    print("|---|---|")
    for name, ms in time_normalisation():
        print(f"| {name} | {ms:.0f} |")


if __name__ == "__main__":
    main()
