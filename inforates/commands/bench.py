"""``inforates-bench throughput``: loader-only clips/s of several loaders, side by side.

A thin layer over :func:`inforates.throughput.measure_throughput`; clips default to the
embedded synthetic test split (built on first use), optionally re-encoded with another
codec and GOP (cached beside it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from inforates.cli import CliError, sampling_options, user_errors
from inforates.data.video_io import CODECS
from inforates.throughput import DEFAULT_LOADERS


def _loader_names(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from inforates.loaders import LOADERS

    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("name at least one loader", ctx, param)
    for name in names:
        try:
            LOADERS.get(name)
        except ValueError as exc:  # unknown (lists the choices) or not available here (says why)
            raise click.BadParameter(str(exc), ctx, param) from None
    return names


def _fmt(value: object, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return format(value, spec)


@click.command("throughput")
@click.option("--loaders", default=",".join(DEFAULT_LOADERS), show_default=True, callback=_loader_names, help="Comma-separated loader names (registry).")
@sampling_options()
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Manifest CSV (default: the synthetic test split).")
@click.option("--limit", type=click.IntRange(min=1), default=120, show_default=True, help="Use the first N clips.")
@click.option("--codec", type=click.Choice(CODECS.names()), default=None, help="Re-encode the clips with this codec first (cached).")
@click.option("--gop", type=click.IntRange(min=1), default=None, help="Keyframe interval when re-encoding (default: the encoder's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--num-threads", type=click.IntRange(min=1), default=2, show_default=True, help="Thread budget of every loader.")
@click.option("--image-size", type=click.IntRange(min=1), default=224, show_default=True, help="Output frames are S x S.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="Timed epochs per loader (after one warm-up).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="INFORATES_CACHE", help="Where the default clips live [env INFORATES_CACHE].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@user_errors
def throughput(loaders, coverage, stride, frames_per_clip, policy, offset, manifest, limit, codec, gop,
               batch_size, num_threads, image_size, device, epochs, cache_dir, as_json):
    """Loader-only throughput of several loaders on the same clips and thread budget."""
    from inforates import defaults
    from inforates.data.manifest import read_manifest
    from inforates.loaders import LoaderOptions
    from inforates.sampling import Sampling
    from inforates.throughput import measure_throughput, transcoded_clips

    if gop is not None and codec is None:
        raise CliError("--gop needs --codec (the clips are re-encoded with that keyframe interval)")
    if manifest is None:
        manifest = defaults.default_dataset(cache_dir).test_manifest
    records = read_manifest(manifest)[:limit]
    if codec is not None:
        folder = defaults.cache_dir(cache_dir) / "bench-clips" / f"{Path(manifest).parent.name}-{codec}-gop{gop or 'default'}"
        records = transcoded_clips(records, codec=codec, gop=gop, out_dir=folder)
    sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=frames_per_clip or 8,
                        policy=policy or "fixed", offset=offset or "start")
    options = LoaderOptions(batch_size=batch_size, image_size=image_size, num_threads=num_threads, device=device)
    result = measure_throughput(records, sampling, loaders=loaders, options=options, epochs=epochs)
    result["manifest"], result["codec"], result["gop"] = str(manifest), codec, gop
    if as_json:
        click.echo(json.dumps(result, default=str))
        return
    click.echo(f"coverage {sampling.coverage:g}, stride {sampling.stride}, {len(records)} clips, "
               f"{num_threads} threads, {image_size}x{image_size}")
    click.echo(f"{'loader':<10} {'clips/s':>9} {'frames/s':>9} {'peak MB':>8} {'vs seed':>8} {'vs best peer':>13}")
    for name, r in result["loaders"].items():
        peer = f"{_fmt(r['vs_best_peer'], '.2f')} ({r['best_peer']})" if r["best_peer"] else "-"
        click.echo(f"{name:<10} {_fmt(r['clips_per_s'], '9.1f')} {_fmt(r['frames_per_s'], '9.0f')} "
                   f"{_fmt(r['peak_rss_mb'], '8.0f')} {_fmt(r['vs_seed'], '8.2f')} {peer:>13}")
