"""``bbcodec train``: train a codec model on images and export it for ``compress -m``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import torch
from tqdm import tqdm

from bbcodec import zoo
from bbcodec.models.export import FLOAT_STORAGE, save_model
from bbcodec.models.latent_reach import grid_advice
from bbcodec.errors import BBCodecError
from bbcodec.models.presets import PRESETS, checked, parse_settings, preset
from bbcodec.training.checkpoints import model_from_checkpoint
from bbcodec.training.data import mixed_batch, open_sources, split_held_out
from bbcodec.training.loop import TrainConfig, is_main_process, train
from bbcodec.training.plots import plot_training
from bbcodec_cli import parallel
from bbcodec_cli.common import DEVICES, fail_cleanly, resolve_device_option

float_storage_option = click.option(
    "--float-storage", type=click.Choice(list(FLOAT_STORAGE)), default="float32", show_default=True,
    help="store the model's non-binary weights at this precision (float16: half the file)")


def _read_config(ctx: click.Context, param, path):
    """``--config FILE``: option defaults from a TOML file whose keys are long option names
    (``steps = 8000``, ``eval = ["a.png"]``); options on the command line still win."""
    if path is None:
        return None
    import tomllib

    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(f"cannot read {path}: {error}", param=param) from None
    names = {option.lstrip("-"): p.name for p in ctx.command.params for option in p.opts if option.startswith("--")}
    unknown = sorted(set(table) - set(names) - {"config"})
    if unknown:
        raise click.BadParameter(f"{path}: unknown option(s) {', '.join(unknown)}", param=param)
    ctx.default_map = {**(ctx.default_map or {}), **{names[key]: value for key, value in table.items()}}
    return path


@click.command("train")
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_read_config,
              help="read option defaults from a TOML file (keys: long option names); the command line wins")
@click.argument("data", nargs=-1, required=True)
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="small", show_default=True)
@click.option("--binary/--float", "binary", default=True, show_default=True, help="binary (BWN) or float residual blocks")
@click.option("--binary-activations", is_flag=True, help="sign activations in the residual blocks")
@click.option("--latent-layers", type=click.IntRange(1, 16), help="override the preset's number of latent layers")
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
              help="change a field of the preset's model config (e.g. --set context_channels=64); repeatable")
@click.option("--steps", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--crop", type=click.IntRange(4), default=32, show_default=True, help="training crop size (pixels)")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--free-bits", type=float, default=0.05, show_default=True, help="per latent dimension and layer")
@click.option("--eval", "eval_data", multiple=True,
              help="held-out data (default: every 20th image of each DATA source, not trained on)")
@click.option("--eval-images", type=click.IntRange(1), default=256, show_default=True)
@click.option("--eval-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/train", show_default=True)
@click.option("--name", default="model", show_default=True, help="exported file: NAME-HASH.safetensors")
@click.option("--resume", is_flag=True, help="continue the run in OUT (a new run needs an OUT without one)")
@click.option("--init-from", help="start a new run from these weights (a model name, file or hash)")
@click.option("--ema", "ema_decay", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="keep a moving average of the weights with this decay (e.g. 0.999) and export it")
@float_storage_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-T", "--threads", type=click.IntRange(0), default=0, show_default=True,
              help="cores to use, shared among the processes torchrun starts on this machine (0: all this "
                   "process may use)")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="train on the CPU or a GPU (under torchrun, each process on the GPU of its local rank)")
@fail_cleanly
def train_command(data, preset_name, binary, binary_activations, latent_layers, settings, steps, batch_size, crop, lr,
                  free_bits, eval_data, eval_images, eval_every, out_dir, name, resume, init_from, ema_decay, float_storage,
                  seed, threads, device):
    """Train a codec model on DATA: folders of images, image files, .npz uint8 arrays, MNIST idx3 files.

    Each batch draws evenly from every source (all image files given count as one source).
    Several processes: torchrun --nproc_per_node N $(which bbcodec) train ...
    """
    device = resolve_device_option(device)  # before any data is read
    changes = {"binary_weights": binary}
    if binary_activations:  # a field of the VAE families only
        changes["binary_activations"] = True
    if latent_layers:
        changes["latent_layers"] = latent_layers
    try:
        changes.update(parse_settings(PRESETS[preset_name], settings))
        model_cfg = checked(preset(preset_name, **changes))
    except (ValueError, BBCodecError) as error:
        raise click.BadParameter(str(error), param_hint="--set") from None
    sources = open_sources(data, model_cfg.image_channels)
    if eval_data:
        held_out_sources = open_sources(eval_data, model_cfg.image_channels)
    else:
        sources, held_out_sources = split_held_out(sources)
        if not held_out_sources:
            raise click.UsageError("no image to hold out for evaluation (each source is one image): give --eval DATA")
    held_out = mixed_batch(held_out_sources, torch.Generator().manual_seed(12345), eval_images, crop)
    about = {"data": list(data), "held_out": {s.name: len(s.images) for s in held_out_sources}}
    click.echo("held out: " + ", ".join(f"{name}: {count} image(s)" for name, count in about["held_out"].items()),
               err=True)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, free_bits=free_bits, eval_every=eval_every,
                      checkpoint_every=eval_every, seed=seed, threads=_threads(threads), ema_decay=ema_decay,
                      device=device)

    def sample_batch(generator, size):
        return mixed_batch(sources, generator, size, crop)

    bar = tqdm(total=steps, desc="train", unit="step", file=sys.stderr, disable=not sys.stderr.isatty())

    def report(record):
        bar.n = record["step"]
        bar.set_postfix(nelbo=f"{record['train_nelbo']:.3f}", refresh=True)
        if "eval_nelbo" in record:
            bar.write(f"step {record['step']}/{steps}: train {record['train_nelbo']:.3f}, held-out "
                      f"{record['eval_nelbo']:.3f} bits/sub-pixel ({record['seconds']:.0f} s)", file=sys.stderr)

    start = zoo.load(init_from)[0] if init_from else None
    model = train(model_cfg, cfg, sample_batch, held_out, out_dir, resume=resume, progress=report, init_from=start,
                  about=about)
    bar.close()
    if not is_main_process():
        return
    if not plot_training(Path(out_dir) / "log.jsonl", Path(out_dir) / "training.png", title=f"{name} ({preset_name})"):
        click.echo("no training plot: matplotlib is not installed (pip install 'bbcodec[plot]')", err=True)
    staging = Path(out_dir) / f"{name}.safetensors"
    digest = save_model(model, staging, float_storage)
    final = staging.with_name(f"{name}-{digest[:12]}.safetensors")
    staging.replace(final)
    advice = grid_advice(model, held_out.to(model.device))
    if advice:
        click.echo(f"note: {advice}", err=True)
    click.echo(str(final))
    sys.stdout.flush()


def _threads(requested: int) -> int:
    """Torch threads per training process: never more than the cores, in all, of this machine's processes."""
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, parallel.cores_for(requested) // local_processes)


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, help="model file to write (.safetensors)")
@click.option("--grid-bits", type=click.IntRange(1, 12), help="code latents on a grid of step 2^-BITS")
@click.option("--grid-bound", type=click.FloatRange(0.5, 64), help="... over [-BOUND, BOUND]")
@float_storage_option
@fail_cleanly
def export_command(checkpoint, output, grid_bits, grid_bound, float_storage):
    """Export a training CHECKPOINT as a codec model file for `compress -m`."""
    changes = {k: v for k, v in (("grid_bits", grid_bits), ("grid_bound", grid_bound)) if v is not None}
    digest = save_model(model_from_checkpoint(Path(checkpoint), **changes), output, float_storage)
    click.echo(f"{output} {digest[:16]}")
