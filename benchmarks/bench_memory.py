"""Peak memory of blockwise prediction: flat in the volume size.

Writes synthetic uint8 volumes of 512 x 512 slices (2 GiB = 8192 slices, 8 GiB
= 32768 slices by default) to disk chunk by chunk, as zarr (one slice per
chunk) or as a TIFF stack (one page per slice), then predicts each from disk
to a zarr output in a subprocess while polling the subprocess's resident
memory (psutil, every 0.1 s; also ``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

Run::

    python benchmarks/bench_memory.py                      # full volumes
    python benchmarks/bench_memory.py --max-slices 2048    # first 2048 slices of each

Memory does not depend on the network beyond its weights and one block's
activations, so by default a tiny network (depth 2, 4 base filters,
untrained) keeps full runs short; ``--model DIR`` uses a trained model
folder. With ``--max-slices`` only that many slices are predicted, but the
normalization statistics are still computed over the whole volume (every
k-th slice) and the reader opens the whole volume. Results go to
docs/bench_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SLICE = 512
ROOT = Path(__file__).resolve().parents[1]


def make_volume(path: Path, gib: float, fmt: str) -> tuple[int, int, int]:
    """Write a synthetic (Z, 512, 512) uint8 volume of `gib` GiB chunk by chunk."""
    from napari_unet.engine.data.synthetic import synthetic_em

    depth = int(gib * 2**30 // (SLICE * SLICE))
    shape = (depth, SLICE, SLICE)
    if path.exists():
        return shape
    base, _ = synthetic_em(slices=32, size=SLICE, cells=150, seed=0)
    tmp = path.with_name(path.name + ".partial")
    if fmt == "zarr":
        import zarr

        out = zarr.create_array(
            str(tmp), shape=shape, chunks=(1, SLICE, SLICE), dtype="uint8", overwrite=True
        )
        for z0 in range(0, depth, 256):
            n = min(256, depth - z0)
            block = np.stack([np.roll(base[(z0 + i) % 32], z0 // 32, axis=1) for i in range(n)])
            out[z0 : z0 + n] = block
    else:
        import tifffile

        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            for z in range(depth):
                page = np.roll(base[z % 32], z // 32, axis=1)
                tif.write(page, contiguous=True, photometric="minisblack")
    tmp.rename(path)
    return shape


def tiny_model(folder: Path) -> Path:
    """A depth-2, 4-filter U-Net model folder (untrained weights)."""
    if (folder / "best.keras").exists():
        return folder
    from napari_unet.engine.config import Config
    from napari_unet.engine.model.model_folder import ModelFolder
    from napari_unet.engine.model.unet import build_unet

    config = Config.model_validate(
        {"model": {"depth": 2, "base_filters": 4}, "output": str(folder)}
    )
    model_folder = ModelFolder(folder)
    model_folder.create()
    model_folder.save_config(config)
    model_folder.save_weights_file(build_unet(config.model), "best")
    return folder


def child(volume: str, model: str, output: str, max_slices: int | None) -> None:
    """Predict `volume` into `output` (runs in the measured subprocess)."""
    from napari_unet.engine.inference.blockwise import BlockwiseOptions, predict_blockwise
    from napari_unet.engine.io.lazy import as_lazy

    depth = as_lazy(volume).shape[0]
    z_range = (0, min(max_slices, depth)) if max_slices else None
    started = time.perf_counter()
    result = predict_blockwise(
        model, volume, output, options=BlockwiseOptions(z_range=z_range, overwrite=True)
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "predicted_slices": result.shape[0],
                "blocks": result.blocks,
                "tiles": result.tiles,
            }
        ),
        flush=True,
    )


def measure(volume: Path, model: Path, output: Path, max_slices: int | None) -> dict:
    """Run the child and poll its resident memory."""
    import psutil

    cmd = [sys.executable, __file__, "--child", str(volume), str(model), str(output)]
    if max_slices:
        cmd += ["--max-slices", str(max_slices)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.1)
    stdout = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - started
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"prediction failed ({proc.returncode}): {stdout[-2000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    ru_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    result.update(
        {
            "peak_rss_gib_polled": peak / 2**30,
            "max_rss_gib_children": ru_maxrss / 2**30,  # max over all children so far
            "wall_seconds": wall,
            "slices_per_second": result["predicted_slices"] / result["seconds"],
            "mpixel_per_second": result["predicted_slices"]
            * SLICE
            * SLICE
            / 1e6
            / result["seconds"],
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("VOLUME", "MODEL", "OUTPUT"))
    parser.add_argument("--sizes", type=float, nargs="+", default=[2, 8], help="GiB")
    parser.add_argument("--format", choices=("zarr", "tiff"), nargs="+", default=["zarr"])
    parser.add_argument("--max-slices", type=int, help="predict only the first N slices")
    parser.add_argument("--model", help="model folder (default: tiny untrained U-Net)")
    parser.add_argument("--data", default="/tmp/napari-unet-bench", help="scratch folder")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_memory.json"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.max_slices)
        return
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else tiny_model(data / "tiny-model")
    runs = []
    for fmt in args.format:
        for gib in args.sizes:
            suffix = ".zarr" if fmt == "zarr" else ".tif"
            volume = data / f"volume-{gib:g}gib{suffix}"
            started = time.perf_counter()
            shape = make_volume(volume, gib, fmt)
            made = time.perf_counter() - started
            run = measure(volume, model, data / "prediction.zarr", args.max_slices)
            run.update(
                {"format": fmt, "volume_gib": gib, "shape": list(shape), "write_seconds": made}
            )
            runs.append(run)
            print(
                f"{fmt:4s} {gib:4g} GiB {shape}: peak RSS {run['peak_rss_gib_polled']:.2f} GiB, "
                f"{run['predicted_slices']} slices in {run['seconds']:.0f} s "
                f"({run['slices_per_second']:.1f} slices/s)",
                flush=True,
            )
    network = "tiny untrained U-Net (depth 2, 4 base filters)" if not args.model else args.model
    report = {
        "benchmark": "peak resident memory of blockwise prediction from disk to zarr",
        "network": network,
        "tiles": "512 x 512, overlap 32, batch 4 (PredictConfig defaults)",
        "max_slices": args.max_slices,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
