"""Archives (bbcodec.archive, ``bbcodec pack / unpack / list``): many images on chunked bits-back chains."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

import bbcodec
from bbcodec import archive, imageio
from bbcodec.archive.layout import deflated
from bbcodec.errors import CorruptDataError
from bbcodec.wire import Malformed, crc32, varint
from bbcodec_cli import parallel
from bbcodec_cli.main import main
from fixtures.samples import MODE_CASES, binary_pixels, noise_pixels, sample_file


def flat_png() -> bytes:
    """A flat RGB PNG of a few dozen bytes, which no model code beats (an archive keeps it as it is)."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (48, 40), (30, 120, 200)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def mixed_members() -> list[archive.Member]:
    """A file the archive keeps as it is, every lossless mode of the samples at two sizes, then a counting
    series of small grey images."""
    members = [archive.Member("kept/flat.png", replace(imageio.read_image(flat_png()), original=flat_png()))]
    for case, (_, _, suffix) in MODE_CASES.items():
        if suffix != ".png":
            continue
        for height, width in ((5, 7), (19, 12)):
            data, _ = sample_file(case, height, width, seed=height)
            members.append(archive.Member(f"mixed/{case}-{height}x{width}.png", imageio.read_image(data)))
    members += [archive.Member(f"digits/{i:03d}", imageio.Image(binary_pixels(8, 8, 1, seed=i), "L"))
                for i in range(30)]
    return members


def packed(members, model_file, **options) -> bytes:
    buffer = io.BytesIO()
    archive.pack(members, buffer, model=str(model_file), **options)
    return buffer.getvalue()


def same_image(a: imageio.Image, b: imageio.Image) -> bool:
    return (a.mode, a.palette, a.palette_mode, a.format, a.metadata) == (b.mode, b.palette, b.palette_mode, b.format,
                                                                           b.metadata) and np.array_equal(a.pixels,
                                                                                                          b.pixels)


@pytest.fixture(scope="module")
def members():
    return mixed_members()


@pytest.fixture(scope="module")
def data(members, model_file) -> bytes:
    return packed(members, model_file, chunk_subpixels=1500)


@pytest.fixture(scope="module")
def opened(model_file):
    """Archive(data) reading with the test model (not installed)."""
    return lambda data, model=model_file: archive.Archive(data, model=str(model))


# -- the library ------------------------------------------------------------------------------------------------
def test_every_image_comes_back_exactly_with_its_name_mode_palette_and_metadata(members, data, opened):
    box = opened(data)
    assert box.complete and not box.problems and len(box.chunks) > 3
    assert box.names() == [m.name for m in members]
    unpacked = dict(box)
    assert all(same_image(unpacked[m.name], m.image) for m in members)


def test_one_image_is_extracted_from_its_chunk_alone(members, data, opened, monkeypatch):
    box = opened(data)
    decoded = []
    original = box.decode_chunk
    monkeypatch.setattr(box, "decode_chunk", lambda chunk: decoded.append(chunk.index) or original(chunk))
    wanted = members[-5]
    assert same_image(box.extract(wanted.name), wanted.image)
    assert len(decoded) == 1
    with pytest.raises(KeyError):
        box.extract("no/such/image")


def test_images_of_one_shape_share_batches_that_grow_with_the_stack(model_file):
    """Version 2: a run of images of one shape (one batch each) shares batches, each at most 3/20 of the tiles
    coded before it (at least one, at most ``max_batch``), in the images' order; version 1 codes each alone."""
    from bbcodec.archive.layout import BATCH_GROWTH, chain_steps
    from bbcodec.coding.image import CoderSettings

    net = bbcodec.load_model(str(model_file))[0]
    settings = CoderSettings().resolve(net)
    shapes = [(8, 8, 1)] * 200 + [(12, 8, 1)] + [(8, 8, 1)] * 5
    steps = chain_steps(net, shapes, settings)
    before = 0
    for step in steps:
        assert 1 <= step.shape()[0] <= max(1, min(settings.max_batch, before * BATCH_GROWTH[0] // BATCH_GROWTH[1]))
        assert len({shapes[index] for *_, index in step.parts}) == 1
        before += step.shape()[0]
    assert [index for step in steps for *_, index in step.parts] == list(range(len(shapes)))
    assert len(steps) < 40 and max(step.shape()[0] for step in steps) == settings.max_batch
    assert len(chain_steps(net, shapes, settings, grows_batches=False)) == len(shapes)


def test_version_3_batches_are_as_large_as_the_stack_pays_for_and_cost_no_more(model_file):
    """Version 3: the encoder joins runs of images of one shape into batches that grow while coding them leaves
    the seed where the stack before left it, and lists them; the chain then costs what it costs with a batch
    per image (within a few words) and decodes from the listed sizes."""
    from bbcodec.archive.layout import group_limits, grouped_seed_length, grouped_steps, image_steps
    from bbcodec.coding.chain import decode_steps, encode_growing, encode_steps
    from bbcodec.coding.image import CoderSettings

    net = bbcodec.load_model(str(model_file))[0]
    settings = CoderSettings().resolve(net)
    images = [binary_pixels(8, 8, 1, seed=i) for i in range(60)] + [binary_pixels(12, 8, 1, seed=99)]
    units = image_steps(net, [image.shape for image in images], settings)
    batches = [(step.view, step.cut(images, net.device)) for step, _ in units]
    limits, seed = group_limits(units, settings.max_batch), grouped_seed_length(units, settings.max_batch)
    assert limits[-1] == 1 and limits[-2] == 1 and max(limits) == settings.max_batch
    encoded, sizes = encode_growing(batches, limits, settings.coder, "auto", seed)
    singles = encode_steps(batches, settings.coder, start="auto")
    assert sum(sizes) == len(units) and len(sizes) < len(units) / 3
    assert len(encoded.payload) <= len(singles.payload) + 4 and encoded.initial_bits <= singles.initial_bits + 128
    steps = grouped_steps(units, sizes, settings.max_batch)
    decoded = decode_steps([(step.view, step.shape()) for step in steps], encoded, settings.coder, seed_length=seed)
    out = [np.empty_like(image) for image in images]
    for step, tiles in zip(steps, decoded):
        step.paste(out, tiles)
    assert all(np.array_equal(a, b) for a, b in zip(out, images))
    for wrong in ([sizes[0] + 1, *sizes[1:]], sizes[:-1], [*sizes, 1], [0, *sizes]):
        with pytest.raises(Malformed):
            grouped_steps(units, wrong, settings.max_batch)


def test_a_chunk_whose_batch_sizes_do_not_fit_its_images_is_refused_and_the_rest_stays_readable(
        model_file, opened, monkeypatch):
    from bbcodec.archive import layout

    members = [archive.Member(f"grey/{i:02d}", imageio.Image(binary_pixels(8, 8, 1, seed=i), "L")) for i in range(24)]
    honest = layout.batch_sizes_bytes
    forged = iter([False, True])
    monkeypatch.setattr(archive.writer, "batch_sizes_bytes",
                        lambda sizes, wbits: honest([*sizes, 1] if next(forged) else sizes, wbits))
    box = opened(packed(members, model_file, chunk_subpixels=12 * 64))
    assert len(box.chunks) == 2 and dict(box.decode_chunk(box.chunks[0])).keys() == {m.name for m in members[:12]}
    with pytest.raises(CorruptDataError, match="chunk 2: corrupt .batch sizes"):
        box.decode_chunk(box.chunks[1])


def calibrated_members() -> list[archive.Member]:
    """Images a random polyphase model codes better with a calibration (it is far from calibrated for them)."""
    return [archive.Member(f"rgb/{i:02d}", imageio.Image(binary_pixels(16, 16, 3, seed=i), "RGB")) for i in range(24)]


def test_a_version_4_chunk_codes_its_images_with_one_calibration(coupled_polyphase_file, monkeypatch):
    """The encoder chooses one calibration on the chunk's images and writes it in the chunk; the reader codes
    with it: the archive reads back exactly and is smaller than the same archive without one."""
    from bbcodec.coding.calibration import choose_for_images

    members = calibrated_members()
    model = bbcodec.load_model(str(coupled_polyphase_file))[0]
    assert choose_for_images(model, [m.image.pixels for m in members])
    calibrated = packed(members, coupled_polyphase_file)
    box = archive.Archive(calibrated, model=str(coupled_polyphase_file))
    assert box.header.version == 4 and all(same_image(image, m.image) for (_, image), m in zip(box, members))
    monkeypatch.setattr(archive.writer, "choose_for_images", lambda net, images: ())
    assert len(calibrated) < len(packed(members, coupled_polyphase_file))


def test_a_small_chunk_names_a_shipped_calibration_where_its_chain_is_smaller(coupled_polyphase_file, monkeypatch):
    """A chunk of four 16x16 images pays hundreds of bytes for a calibration of its own; one shipped with the
    model (fitted on images like them) costs two, and the writer keeps the smaller chain; the reader finds it by
    the model."""
    from bbcodec.coding import calibration

    members = calibrated_members()
    model = bbcodec.load_model(str(coupled_polyphase_file))[0]
    shipped = calibration.choose_for_images(model, [m.image.pixels for m in members])
    monkeypatch.setattr(model, "calibration_presets", (shipped,))
    small = packed(members, coupled_polyphase_file, chunk_subpixels=4 * 768)
    box = archive.Archive(small, model=str(coupled_polyphase_file))
    assert all(same_image(image, m.image) for (_, image), m in zip(box, members))
    monkeypatch.setattr(model, "calibration_presets", ())
    assert len(small) < len(packed(members, coupled_polyphase_file, chunk_subpixels=4 * 768))
    with pytest.raises(CorruptDataError, match="names shipped calibration"):
        box.decode_chunk(box.chunks[0])


def test_a_chunk_whose_calibration_is_damaged_is_refused_and_the_rest_stays_readable(
        coupled_polyphase_file, monkeypatch):
    from bbcodec.archive import layout

    members = calibrated_members()
    honest = layout.calibration_bytes
    forged = iter([False, True])
    monkeypatch.setattr(archive.writer, "calibration_bytes",
                        lambda indices: honest((250,) * len(indices) if next(forged) else indices))
    box = archive.Archive(packed(members, coupled_polyphase_file, chunk_subpixels=12 * 768),
                          model=str(coupled_polyphase_file))
    assert len(box.chunks) == 2 and dict(box.decode_chunk(box.chunks[0])).keys() == {m.name for m in members[:12]}
    with pytest.raises(CorruptDataError, match="chunk 2: corrupt .*calibration"):
        box.decode_chunk(box.chunks[1])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_archive_of_an_earlier_version_reads_back(model_file, opened, monkeypatch, version):
    """Version 1 archives (a zlib stream, a 16-byte digest, a batch per image), version 2 (batches that grow
    by a fixed share of the images before) and version 3 (no calibration) are still read."""
    monkeypatch.setattr(archive.writer, "VERSION", version)
    members = [archive.Member(f"grey/{i:02d}", imageio.Image(binary_pixels(8, 8, 1, seed=i), "L")) for i in range(40)]
    data = packed(members, model_file)
    box = opened(data)
    assert data[4] == version and box.header.version == version and box.complete
    assert all(same_image(image, m.image) for (_, image), m in zip(box, members))


def test_counting_names_of_one_description_are_one_series_entry():
    image = imageio.Image(np.zeros((4, 4, 1), np.uint8), "L")
    names = [f"set/{i:04d}" for i in range(7, 20)] + ["set/0021", "other.png", "x9", "x10"]
    entries = archive.entries_of([archive.Member(name, image) for name in names])
    assert [(e.prefix, e.digits, e.first, e.count) for e in entries] == [
        ("set/", 4, 7, 13), ("set/0021", 0, 0, 1), ("other.png", 0, 0, 1), ("x9", 0, 0, 1), ("x10", 0, 0, 1)]
    assert [name for entry in entries for name in entry.names()] == names


def test_ten_thousand_counting_names_are_one_entry():
    image = imageio.Image(np.zeros((2, 2, 1), np.uint8), "L")
    names = [f"t10k/{i:05d}" for i in range(10_000)]
    entries = archive.entries_of([archive.Member(name, image) for name in names])
    assert len(entries) == 1 and entries[0].names() == names


def test_images_that_the_model_codes_larger_than_raw_are_stored_raw(model_file, opened):
    noise = [archive.Member(f"noise/{i}", imageio.Image(noise_pixels(16, 16, 3, seed=i), "RGB")) for i in range(3)]
    buffer = io.BytesIO()
    report = archive.pack(noise, buffer, model=str(model_file))
    assert report.stored_chunks == report.chunks == 1
    assert all(same_image(image, m.image) for (_, image), m in zip(opened(buffer.getvalue()), noise))


@pytest.mark.parametrize("name", ["", "../up.png", "/etc/passwd", "a//b.png", "a/./b.png", "c:\\x.png", "a\nb",
                                  "x" * 201])
def test_names_that_would_write_outside_the_folder_are_refused(model_file, name):
    image = imageio.Image(np.zeros((2, 2, 1), np.uint8), "L")
    with pytest.raises(archive.ArchiveError):
        packed([archive.Member(name, image)], model_file)


def test_float_arithmetic_is_refused_since_an_archive_must_decode_on_every_machine(model_file):
    from bbcodec.coding.image import CoderSettings

    image = imageio.Image(np.zeros((2, 2, 1), np.uint8), "L")
    with pytest.raises(archive.ArchiveError, match="exact arithmetic"):
        packed([archive.Member("a.png", image)], model_file, settings=CoderSettings(arithmetic="float"))


def test_two_members_of_one_name_are_refused(model_file):
    image = imageio.Image(np.zeros((2, 2, 1), np.uint8), "L")
    with pytest.raises(archive.ArchiveError, match="two members"):
        packed([archive.Member("a.png", image)] * 2, model_file)


def forged_chunk(entries: bytes) -> bytes:
    """A chunk whose entries are ``entries`` (stored pixels of 2x2 grey images, digest not checked), CRC right."""
    form = archive.FORMATS[archive.VERSION]
    compressed = deflated(entries, form.deflate_bits)
    body = varint(len(compressed)) + compressed + bytes([1]) + varint(4) + bytes(4) + bytes(form.digest_bytes)
    return archive.CHUNK_MAGIC + varint(len(body)) + body + struct.pack("<I", crc32(body))


def test_a_forged_chunk_naming_a_path_outside_the_folder_is_refused_and_the_rest_stays_readable(data, opened):
    description = archive.describe(imageio.Image(np.zeros((2, 2, 1), np.uint8), "L"))
    evil = archive.entries_bytes([archive.Entry("../../evil.png", description)])
    header_end = archive.ArchiveHeader.read(data)[1]
    box = opened(data[:header_end] + forged_chunk(evil) + data[header_end:])
    assert "../../evil.png" not in box.names() and len(box.names()) == len(opened(data).names())
    assert any("outside the folder" in problem for problem in box.problems)


def test_a_forged_series_of_a_billion_images_is_refused_before_any_name_is_made(data, opened):
    description = archive.describe(imageio.Image(np.zeros((1, 1, 1), np.uint8), "L"))
    huge = archive.entries_bytes([archive.Entry("x/", description, digits=10, count=10 ** 9)])
    header_end = archive.ArchiveHeader.read(data)[1]
    box = opened(data[:header_end] + forged_chunk(huge))
    assert box.names() == [] and any("limits" in problem for problem in box.problems)


def test_a_damaged_chunk_loses_its_own_images_only(members, data, opened):
    box = opened(data)
    second = box.chunks[1]
    damaged = bytearray(data)
    damaged[(second.body.start + second.body.stop) // 2] ^= 0x10
    hurt = opened(bytes(damaged))
    lost = {name for name, _ in second.members}
    assert set(hurt.names()) == set(box.names()) - lost
    assert any("chunk 2" in problem and "damaged" in problem for problem in hurt.problems)
    assert all(same_image(image, m.image) for (name, image), m in zip(hurt, (m for m in members if m.name not in lost)))


def test_every_truncation_and_bit_flip_is_refused_or_decodes_exactly(members, model_file, opened):
    small = members[:2] + members[-3:]
    data = packed(small, model_file, chunk_subpixels=100)
    expected = {m.name: m.image for m in small}
    rng = np.random.default_rng(0)
    cuts = list(range(0, len(data), 7)) + [len(data) - 1]
    flips = [(int(i), 1 << int(b)) for i, b in zip(rng.integers(0, len(data), 120), rng.integers(0, 8, 120))]
    for kind, damaged in [("cut", data[:cut]) for cut in cuts] + [("flip", _flipped(data, *f)) for f in flips]:
        try:
            box = opened(damaged)
        except CorruptDataError:
            continue
        assert kind == "flip" or not box.complete
        for chunk in box.chunks:
            try:
                images = box.decode_chunk(chunk)
            except CorruptDataError:
                continue
            assert all(same_image(image, expected[name]) for name, image in images)


def _flipped(data: bytes, index: int, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= bit
    return bytes(damaged)


def test_another_model_is_refused_with_a_clear_message(data, opened, other_model_file):
    box = opened(data, other_model_file)
    with pytest.raises(CorruptDataError, match="made with model"):
        box.decode_chunk(box.chunks[-1])


# -- the commands -----------------------------------------------------------------------------------------------
@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.setattr(parallel, "available_cores", lambda: 1)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") from result.exception
    return result


def write_inputs(folder) -> dict:
    """A folder of PNGs (one in a subfolder), an .npz of four RGB images; {member name: pixels}."""
    (folder / "pics" / "sub").mkdir(parents=True)
    expected = {}
    for index, (case, path) in enumerate([("RGB", "pics/a.png"), ("P", "pics/sub/b.png"), ("LA", "pics/c.png")]):
        data, _ = sample_file(case, 9, 6 + index, seed=index)
        (folder / path).write_bytes(data)
        expected[path] = imageio.read_image(data).pixels
    array = np.stack([binary_pixels(6, 5, 3, seed=s) for s in range(4)])
    np.savez(folder / "set.npz", test_x=array)
    expected.update({f"set.npz/{i}": array[i] for i in range(4)})
    return expected


def test_pack_list_and_unpack_round_trip_a_folder_and_an_npz(workdir, model_file):
    expected = write_inputs(workdir)
    packed_run = run("pack", "all.bba", "pics", "set.npz", "-m", model_file, "--chunk", 200)
    assert packed_run.exit_code == 0, packed_run.output
    assert "7 images" in packed_run.stderr
    listed = run("list", "all.bba")
    assert listed.exit_code == 0 and listed.stdout.split() == sorted(expected)[:3] + [f"set.npz/{i}" for i in range(4)]
    assert run("unpack", "all.bba", "-C", "out", "-m", model_file).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    for name, pixels in expected.items():
        written = workdir / "out" / (name if name.endswith(".png") else name + ".png")
        assert np.array_equal(imageio.read_image(written.read_bytes()).pixels, pixels), name
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask  # as tar unpacks: the umask's permissions


def test_unpack_writes_only_the_members_named_and_never_over_a_file(workdir, model_file):
    write_inputs(workdir)
    assert run("pack", "all.bba", "pics", "set.npz", "-m", model_file).exit_code == 0
    assert run("unpack", "all.bba", "set.npz/2", "-C", "one", "-m", model_file).exit_code == 0
    assert [p.name for p in (workdir / "one").rglob("*") if p.is_file()] == ["2.png"]
    again = run("unpack", "all.bba", "set.npz/2", "-C", "one", "-m", model_file)
    assert again.exit_code == 1 and "already exists" in again.stderr
    missing = run("unpack", "all.bba", "nope", "-C", "one", "-m", model_file)
    assert missing.exit_code == 1 and "nope: not in the archive" in missing.stderr


def test_pack_refuses_an_existing_archive_an_input_as_target_and_lossy_files(workdir, model_file):
    write_inputs(workdir)
    (workdir / "old.bba").write_bytes(b"x")
    assert "already exists" in run("pack", "old.bba", "pics", "-m", model_file).stderr
    assert "one of the inputs" in run("pack", "pics/a.png", "pics/a.png", "-m", model_file, "-f").stderr
    jpeg, _ = sample_file("CMYK-JPEG", 8, 8)
    (workdir / "photo.jpg").write_bytes(jpeg)
    refused = run("pack", "new.bba", "photo.jpg", "-m", model_file)
    assert refused.exit_code == 1 and "lossy" in refused.stderr and not (workdir / "new.bba").exists()
    assert not list(workdir.glob(".new.bba*"))  # no temporary file left behind


def test_unpack_of_a_damaged_archive_writes_the_intact_images_and_fails(workdir, model_file):
    write_inputs(workdir)
    assert run("pack", "all.bba", "pics", "set.npz", "-m", model_file, "--chunk", 200).exit_code == 0
    data = (workdir / "all.bba").read_bytes()
    box = archive.Archive(data)
    first = box.chunks[0]
    damaged = bytearray(data)
    damaged[first.body.stop - 3] ^= 1
    (workdir / "all.bba").write_bytes(bytes(damaged))
    result = run("unpack", "all.bba", "-C", "out", "-m", model_file)
    assert result.exit_code == 1 and "chunk 1" in result.stderr and "damaged" in result.stderr
    written = {str(p.relative_to(workdir / "out")) for p in (workdir / "out").rglob("*") if p.is_file()}
    lost = {name for name, _ in first.members}
    assert written and not written & lost


def test_list_and_unpack_refuse_special_files_and_non_archives_in_one_line(workdir):
    os.mkfifo(workdir / "fifo")
    (workdir / "text.bba").write_bytes(b"not an archive")
    (workdir / "empty.bba").write_bytes(b"")
    for name, message in [("fifo", "not a regular file"), (".", "not a regular file"), ("/dev/null", "not a regular"),
                          ("text.bba", "not a bbcodec archive"), ("empty.bba", "not a bbcodec archive"),
                          ("missing.bba", "No such file")]:
        for command in ("list", "unpack"):
            result = run(command, name)
            assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_mnist_idx_file_is_packed_as_one_counting_series(workdir, model_file):
    import gzip

    digits = np.stack([binary_pixels(6, 6, 1, seed=s)[..., 0] for s in range(12)])
    header = struct.pack(">IIII", 0x803, len(digits), 6, 6)
    (workdir / "tiny-idx3-ubyte.gz").write_bytes(gzip.compress(header + digits.tobytes()))
    assert run("pack", "d.bba", "tiny-idx3-ubyte.gz", "-m", model_file).exit_code == 0
    box = archive.Archive((workdir / "d.bba").read_bytes(), model=str(model_file))
    assert box.names() == [f"tiny-idx3-ubyte.gz/{i:02d}" for i in range(12)]
    assert len(archive.entries_of([archive.Member(n, imageio.Image(d[..., None], "L"))
                                   for n, d in zip(box.names(), digits)])) == 1
    assert all(np.array_equal(image.pixels[..., 0], digits[i]) for i, (_, image) in enumerate(box))


GOLDEN = Path(__file__).resolve().parent / "golden" / "archive"


@pytest.mark.parametrize("name", sorted(json.loads((GOLDEN / "golden.json").read_text())))
def test_every_golden_archive_reads_back_exactly_with_the_installed_model(name):
    """``tests/golden/archive/*.bba`` (made by ``make_archive_golden.py`` there, never replaced): found model
    by the id it carries, every member's name, mode, palette, metadata, pixels and kept file as recorded."""
    recorded = json.loads((GOLDEN / "golden.json").read_text())[name]
    box = archive.Archive((GOLDEN / name).read_bytes())
    assert box.complete and len(box.chunks) == recorded["chunks"]
    assert recorded["model_hash"].startswith(box.header.model)
    decoded = dict(box)
    with np.load(GOLDEN / recorded["pixels"]) as pixels:
        for member in recorded["members"]:
            image = decoded[member["name"]]
            assert (image.mode, (image.palette or b"").hex()) == (member["mode"], member["palette"])
            assert {k: v.hex() for k, v in image.metadata.items()} == member["metadata"]
            assert np.array_equal(image.pixels, pixels[member["array"]])
            original = hashlib.sha256(image.original).hexdigest() if image.original else None
            assert original == member["original_sha256"]
    assert box.names() == [member["name"] for member in recorded["members"]]


def test_an_image_whose_code_is_larger_than_its_file_is_kept_as_that_file(workdir, model_file):
    """A flat PNG deflates to a few dozen bytes, which no model code beats: the archive keeps the file itself,
    unpack writes it back byte for byte, and the other members are still coded."""
    (workdir / "pics").mkdir()
    flat = flat_png()
    (workdir / "pics" / "flat.png").write_bytes(flat)
    coded, _ = sample_file("RGB", 12, 10, seed=3)
    (workdir / "pics" / "raw.png").write_bytes(coded)
    result = run("pack", "p.bba", "pics", "-m", model_file)
    assert result.exit_code == 0 and "1 kept byte for byte" in result.stderr
    box = archive.Archive((workdir / "p.bba").read_bytes(), model=str(model_file))
    kinds = {name: description.kept for chunk in box.chunks for name, description in chunk.members}
    assert kinds == {"pics/flat.png": True, "pics/raw.png": False}
    assert (workdir / "p.bba").stat().st_size < len(flat) + len(coded) + 200
    assert run("unpack", "p.bba", "-C", "out", "-m", model_file).exit_code == 0
    assert (workdir / "out" / "pics" / "flat.png").read_bytes() == flat
    assert np.array_equal(imageio.read_image((workdir / "out" / "pics" / "raw.png").read_bytes()).pixels,
                          imageio.read_image(coded).pixels)
