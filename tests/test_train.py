"""Training: a resumed run continues exactly, with the model it started with."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcodec.models.presets import preset
from bbcodec.training.loop import TrainConfig, train

IMAGES = torch.randint(0, 256, (64, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def sample_batch(generator, size):
    return IMAGES[torch.randint(len(IMAGES), (size,), generator=generator)]


def run(out_dir, steps, config, resume=False, ema_decay=0.0):
    cfg = TrainConfig(steps=steps, batch_size=4, eval_every=2, checkpoint_every=2, warmup_steps=2, threads=1,
                      ema_decay=ema_decay)
    return train(config, cfg, sample_batch, IMAGES[:8], out_dir, resume=resume)


class Interrupted(Exception):
    pass


def interrupt_at(step):
    def progress(record):
        if record["step"] == step:
            raise Interrupted
    return progress


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["raw", "ema"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, ema_decay):
    config = preset("tiny")
    straight = run(tmp_path / "straight", 4, config, ema_decay=ema_decay)
    cfg = TrainConfig(steps=4, batch_size=4, eval_every=2, checkpoint_every=2, warmup_steps=2, threads=1,
                      ema_decay=ema_decay)
    with pytest.raises(Interrupted):  # stopped right after the step-2 checkpoint
        train(config, cfg, sample_batch, IMAGES[:8], tmp_path / "resumed", progress=interrupt_at(2))
    resumed = run(tmp_path / "resumed", 4, config, resume=True, ema_decay=ema_decay)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_keeps_the_checkpoint_model_config(tmp_path):
    run(tmp_path, 2, preset("tiny"))
    resumed = run(tmp_path, 3, preset("small"), resume=True)
    assert resumed.config == preset("tiny")


@pytest.mark.parametrize("float_storage", ["float32", "float16"])
def test_export_a_checkpoint_then_compress_and_decompress(tmp_path, float_storage):
    from click.testing import CliRunner
    from safetensors import safe_open

    import bbcodec
    from bbcodec_cli.main import main

    run(tmp_path, 2, preset("tiny"))
    exported = tmp_path / "exported.safetensors"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "checkpoint.safetensors"), "-o", str(exported),
                                       "--grid-bits", "4", "--grid-bound", "4", "--float-storage", float_storage])
    assert result.exit_code == 0, result.output
    with safe_open(exported, "np") as stored:
        dtypes = {str(stored.get_tensor(name).dtype) for name in stored.keys()}
    assert dtypes == {"uint8", float_storage}
    assert bbcodec.load_model(str(exported))[0].config.grid_bits == 4
    pixels = np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[None, :, None], 40, axis=0).repeat(3, axis=2)
    image = bbcodec.Image(pixels=pixels, mode="RGB", palette=None, palette_mode=None, format="PNG", metadata={})
    data = bbcodec.compress(image, model=str(exported))
    assert np.array_equal(bbcodec.decompress(data, model=str(exported)).pixels, pixels)


def test_training_writes_a_curve_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from bbcodec.training.plots import plot_training

    from PIL import Image

    run(tmp_path, 4, preset("tiny"))
    assert plot_training(tmp_path / "log.jsonl", tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without_kl = tmp_path / "flow.jsonl"  # a family without latent layers logs no KL: one panel, half as wide
    without_kl.write_text("\n".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "kl"})
                                    for line in (tmp_path / "log.jsonl").read_text().splitlines()))
    assert plot_training(without_kl, tmp_path / "flow.png")
    assert Image.open(tmp_path / "flow.png").width < 0.6 * Image.open(tmp_path / "training.png").width


def test_logs_of_continued_runs_are_chained_step_after_step(tmp_path):
    from bbcodec.training.plots import read_stages

    for name, steps in (("first.jsonl", (50, 100)), ("second.jsonl", (50, 100, 150))):
        (tmp_path / name).write_text("".join(f'{{"step": {s}, "train_nelbo": 1.0}}\n' for s in steps))
    records, starts = read_stages([tmp_path / "first.jsonl", tmp_path / "second.jsonl"])
    assert [r["step"] for r in records] == [50, 100, 150, 200, 250] and starts == [100]


def test_init_from_starts_a_new_run_from_the_weights(tmp_path):
    first = run(tmp_path / "first", 2, preset("tiny"))
    cfg = TrainConfig(steps=1, batch_size=4, eval_every=1, checkpoint_every=1, warmup_steps=1, lr=1e-9, threads=1)
    second = train(preset("small"), cfg, sample_batch, IMAGES[:8], tmp_path / "second", init_from=first)
    assert second.config == first.config
    close = [torch.allclose(a, b, atol=1e-6) for a, b in zip(first.state_dict().values(), second.state_dict().values())]
    assert all(close)  # one step at a tiny learning rate barely moves the weights it started from


def test_moving_average_is_what_training_returns_and_exports(tmp_path):
    from bbcodec.training.checkpoints import model_from_checkpoint

    averaged = run(tmp_path / "ema", 4, preset("tiny"), ema_decay=0.5)
    raw = run(tmp_path / "raw", 4, preset("tiny"))
    assert any(not torch.equal(a, b) for a, b in zip(averaged.state_dict().values(), raw.state_dict().values()))
    exported = model_from_checkpoint(tmp_path / "ema" / "checkpoint.safetensors")
    for (name, a), b in zip(averaged.state_dict().items(), exported.state_dict().values()):
        assert torch.equal(a, b), name
    assert "eval_nelbo_ema" in (tmp_path / "ema" / "log.jsonl").read_text()


def test_train_command_trains_exports_and_the_export_compresses(tmp_path):
    """`bbcodec train` end to end on an .npz: the exported model is named by its hash and codes images."""
    from click.testing import CliRunner

    import bbcodec
    from bbcodec_cli.main import main

    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", train_x=images)
    result = CliRunner().invoke(main, ["train", str(tmp_path / "images.npz"), "--preset", "tiny", "--steps", "2",
                                       "--batch-size", "4", "--crop", "8", "--eval-images", "4", "--eval-every", "1",
                                       "--threads", "1", "--out", str(tmp_path / "run"), "--name", "mine",
                                       "--set", "hidden_channels=12", "--set", "binary_weights=false"])
    assert result.exit_code == 0, result.output
    exported = Path(result.stdout.strip().splitlines()[-1])
    model, digest = bbcodec.load_model(str(exported))
    assert exported.name == f"mine-{digest[:12]}.safetensors"
    assert model.config.hidden_channels == 12 and not model.config.binary_weights  # --set changed the preset
    assert "held out: " in result.stderr and "(held out): 1 image(s)" in result.stderr  # 16 images: the 16th
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first["run"]["held_out"] == {f"{tmp_path / 'images.npz'} (held out)": 1}
    image = bbcodec.Image(pixels=images[0], mode="RGB")
    assert np.array_equal(bbcodec.decompress(bbcodec.compress(image, model=str(exported)), model=str(exported)).pixels,
                          images[0])


def test_npz_arrays_are_read_the_same_way_by_train_and_bench(tmp_path):
    """One loader: the named array, else the preferred one, else the only one; anything else names the arrays."""
    from bbcodec.benchmark.sets import open_set
    from bbcodec.training.data import open_source, read_npz

    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", images=images)
    np.savez(tmp_path / "two.npz", a=images, b=images[:2])
    assert np.array_equal(read_npz(tmp_path / "one.npz"), images)
    assert len(open_source(str(tmp_path / "one.npz")).images) == 5 == len(open_set(str(tmp_path / "one.npz")).images)
    assert len(read_npz(tmp_path / "two.npz", "b")) == 2
    for reader in (lambda p: read_npz(p), lambda p: open_source(str(p)), lambda p: open_set(str(p))):
        with pytest.raises(ValueError, match="holds a, b"):
            reader(tmp_path / "two.npz")


def test_a_new_run_never_reuses_a_folder_and_resume_needs_a_checkpoint(tmp_path):
    from bbcodec.errors import BBCodecError

    with pytest.raises(BBCodecError, match="no checkpoint to resume"):
        run(tmp_path / "empty", 2, preset("tiny"), resume=True)
    run(tmp_path / "done", 2, preset("tiny"))
    log = (tmp_path / "done" / "log.jsonl").read_text()
    with pytest.raises(BBCodecError, match="holds a run already"):
        run(tmp_path / "done", 2, preset("tiny"))
    assert (tmp_path / "done" / "log.jsonl").read_text() == log  # nothing appended, nothing overwritten


def test_held_out_images_are_never_trained_on():
    from bbcodec.training.data import CropSource, split_held_out

    images = [torch.full((1, 4, 4), i, dtype=torch.uint8) for i in range(45)]
    sources = [CropSource(images, "many"), CropSource(images[:3], "few"), CropSource(images[:1], "one")]
    training, held_out = split_held_out(sources)
    assert [len(s.images) for s in training] == [43, 2, 1]
    assert [(s.name, [int(im[0, 0, 0]) for im in s.images]) for s in held_out] == [
        ("many (held out)", [19, 39]), ("few (held out)", [2])]
    assert split_held_out([CropSource(images[:1], "one")])[1] == []


def test_short_runs_warm_up_within_a_tenth_of_their_steps():
    from bbcodec.training.loop import learning_rate

    assert learning_rate(9, TrainConfig(steps=100, warmup_steps=200, lr=1.0, final_lr_fraction=1.0)) == 1.0
    assert learning_rate(0, TrainConfig(steps=10_000, warmup_steps=200, lr=1.0, final_lr_fraction=1.0)) == 1 / 200


def test_train_on_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    from click.testing import CliRunner

    from bbcodec_cli.main import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    result = CliRunner().invoke(main, ["train", str(tmp_path), "--device", "cuda", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "no CUDA device" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_reads_a_recipe_from_a_config_file_and_the_command_line_wins(tmp_path):
    from click.testing import CliRunner

    from bbcodec_cli.main import main

    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", train_x=images)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('preset = "tiny"\nsteps = 3\nbatch-size = 2\ncrop = 8\neval-images = 2\nthreads = 1\n'
                      f'out = "{tmp_path / "run"}"\n')
    result = CliRunner().invoke(main, ["train", "--config", str(recipe), str(tmp_path / "images.npz"), "--steps", "2"])
    assert result.exit_code == 0, result.output
    steps = [json.loads(line).get("step") for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s) == 2
    recipe.write_text("stpes = 3\n")
    result = CliRunner().invoke(main, ["train", "--config", str(recipe), str(tmp_path / "images.npz")])
    assert result.exit_code == 2 and "unknown option(s) stpes" in result.output


@pytest.mark.parametrize("setting, message", [
    ("hiden_channels=8", "FIELD one of"), ("hidden_channels=wide", "hidden_channels is an integer"),
    ("binary_weights=yes", "true or false"), ("levels=2", "FIELD one of"),  # not a field of the tiny preset
    ("hidden_channels=100000", "expected an integer in"),  # a model file would refuse it
])
def test_set_refuses_what_a_model_file_could_not_hold(tmp_path, setting, message):
    from click.testing import CliRunner

    from bbcodec_cli.main import main

    result = CliRunner().invoke(main, ["train", str(tmp_path), "--preset", "tiny", "--set", setting,
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output and "--set" in result.output
    assert not (tmp_path / "run").exists()
