"""CPU cost of our sanitize+resize path against naive Pillow and pyvips, per corpus image.

    uv run python -m bench.images [--reps 9] [--dimension 800]

Single process, time.process_time (CPU seconds of this process, all threads), the
median of several repetitions after one warm-up. libvips runs with one thread and
its operation cache off, so every repetition does the full work, as ours does.
Writes bench/out/images.json and bench/out/images.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # before pyvips loads libvips

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import PIL  # noqa: E402
import pyvips  # noqa: E402
from PIL import Image  # noqa: E402

from shared.images import ImageLimits, resize_image, sanitize_image  # noqa: E402
from tests.imagecorpus import BENCH_CORPUS  # noqa: E402

OUT_DIR = Path(__file__).parent / "out"
PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
VIPS_SUFFIX = {"image/jpeg": ".jpg[Q=85,interlace]", "image/png": ".png", "image/gif": ".gif"}


def ours(data: bytes, content_type: str, dimension: int) -> bytes:
    """What the sanitizer and resizer services do, back to back (the sanitizer gets the size hint)."""
    sanitized = sanitize_image(data, content_type, ImageLimits(), dimension)
    return resize_image(sanitized.data, content_type, dimension).data


def ours_without_hint(data: bytes, content_type: str, dimension: int) -> bytes:
    sanitized = sanitize_image(data, content_type, ImageLimits())
    return resize_image(sanitized.data, content_type, dimension).data


def naive_pillow(data: bytes, content_type: str, dimension: int) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((dimension, dimension), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    params = {"quality": 85} if content_type == "image/jpeg" else {}
    image.save(out, PILLOW_FORMAT[content_type], **params)
    return out.getvalue()


def vips_thumbnail(data: bytes, content_type: str, dimension: int) -> bytes:
    return pyvips.Image.thumbnail_buffer(data, dimension).write_to_buffer(VIPS_SUFFIX[content_type])


PATHS = {
    "ours": ours,
    "ours_no_hint": ours_without_hint,
    "naive_pillow": naive_pillow,
    "pyvips": vips_thumbnail,
}


def cpu_ms(fn, *args, reps: int) -> tuple[float, int]:
    output = fn(*args)  # warm-up (also yields the output size)
    output = getattr(output, "data", output)
    samples = []
    for _ in range(reps):
        start = time.process_time()
        fn(*args)
        samples.append(time.process_time() - start)
    return statistics.median(samples) * 1000, len(output)


def measure(reps: int, dimension: int) -> dict:
    pyvips.cache_set_max(0)
    images = {}
    for name, (content_type, make) in BENCH_CORPUS.items():
        data = make()
        with Image.open(io.BytesIO(data)) as probe:
            size = probe.size
        row = {
            "content_type": content_type,
            "input_bytes": len(data),
            "input_size": size,
            "cpu_ms": {},
            "output_bytes": {},
        }
        for path, fn in PATHS.items():
            row["cpu_ms"][path], row["output_bytes"][path] = cpu_ms(fn, data, content_type, dimension, reps=reps)
        sanitized = sanitize_image(data, content_type, ImageLimits(), dimension)
        row["cpu_ms"]["ours_sanitize_stage"], _ = cpu_ms(
            sanitize_image, data, content_type, ImageLimits(), dimension, reps=reps
        )
        row["cpu_ms"]["ours_resize_stage"], _ = cpu_ms(resize_image, sanitized.data, content_type, dimension, reps=reps)
        row["ours_over_pyvips"] = row["cpu_ms"]["ours"] / row["cpu_ms"]["pyvips"]
        row["ours_over_naive"] = row["cpu_ms"]["ours"] / row["cpu_ms"]["naive_pillow"]
        images[name] = row
    totals = {path: sum(r["cpu_ms"][path] for r in images.values()) for path in PATHS}
    return {
        "what": f"CPU ms per image (median of {reps}, time.process_time, one process, libvips 1 thread, cache off) to {dimension} px",
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine()},
        "versions": {
            "pillow": PIL.__version__,
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        },
        "dimension": dimension,
        "images": images,
        "corpus_total_ms": totals,
        "corpus_total_ours_over_pyvips": totals["ours"] / totals["pyvips"],
        "corpus_total_ours_over_naive": totals["ours"] / totals["naive_pillow"],
    }


def print_table(result: dict) -> None:
    print(result["what"])
    header = f"{'image':<14}{'ours':>8}{'(sanit':>8}{'+resize)':>9}{'no hint':>9}{'naive':>8}{'pyvips':>8}{'ours/vips':>11}{'ours/naive':>11}"
    print(header)
    print("-" * len(header))
    for name, row in result["images"].items():
        ms = row["cpu_ms"]
        print(
            f"{name:<14}{ms['ours']:>8.1f}{ms['ours_sanitize_stage']:>8.1f}{ms['ours_resize_stage']:>9.1f}"
            f"{ms['ours_no_hint']:>9.1f}{ms['naive_pillow']:>8.1f}{ms['pyvips']:>8.1f}"
            f"{row['ours_over_pyvips']:>10.2f}x{row['ours_over_naive']:>10.2f}x"
        )
    totals = result["corpus_total_ms"]
    print(
        f"{'corpus total':<14}{totals['ours']:>8.1f}{'':>17}{totals['ours_no_hint']:>9.1f}{totals['naive_pillow']:>8.1f}"
        f"{totals['pyvips']:>8.1f}{result['corpus_total_ours_over_pyvips']:>10.2f}x{result['corpus_total_ours_over_naive']:>10.2f}x"
    )
    # CPU is half the trade: pyvips writes unfiltered PNG, Pillow picks a row filter per line.
    print(
        "output KB (what the consumer downloads):  "
        + "   ".join(
            f"{name} ours {row['output_bytes']['ours'] / 1024:.0f} / naive {row['output_bytes']['naive_pillow'] / 1024:.0f}"
            f" / pyvips {row['output_bytes']['pyvips'] / 1024:.0f}"
            for name, row in result["images"].items()
        )
    )


def plot(result: dict, path: Path) -> None:
    names = list(result["images"])
    series = [
        ("ours", "ours (sanitize+resize)"),
        ("pyvips", "pyvips thumbnail_buffer"),
        ("naive_pillow", "naive Pillow"),
    ]
    width = 0.27
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (key, label) in enumerate(series):
        values = [result["images"][n]["cpu_ms"][key] for n in names]
        bars = ax.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("CPU ms per image (median)")
    ax.set_title(f"Image stage CPU cost to {result['dimension']} px (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--dimension", type=int, default=800)
    args = parser.parse_args()
    result = measure(args.reps, args.dimension)
    print_table(result)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "images.json").write_text(json.dumps(result, indent=2))
    plot(result, OUT_DIR / "images.png")
    print(f"wrote {OUT_DIR / 'images.json'} and {OUT_DIR / 'images.png'}")


if __name__ == "__main__":
    main()
