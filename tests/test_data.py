"""gan_jax.data: offline TFDS builds, [-1, 1] image sources, Stacked MNIST, resumable per-host pipelines.

MNIST and Fashion-MNIST are the fake ones of tests/fake_data.py, in the original files; the real files only in
test_full_real_mnist, skipped unless $GAN_JAX_DATA holds them.
"""
import io
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading

import chex
import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import data
from gan_jax.data import tfds_local
from gan_jax.data.__main__ import main as cli_main
from gan_jax.data.pipeline import PREFETCH_THREAD_NAME, Pipeline, epoch_permutation, splitmix64
from gan_jax.data.prefetch import prefetch_to_devices, split_for_devices
from gan_jax.data.sources import fit_image, make_image_source, stacked_digit_indices
from tests import fake_data

N_TRAIN, N_TEST = 256, 64
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """(data_dir, train images [N, 28, 28], train labels [N]) of a tiny MNIST built offline from its idx files."""
    tmp = tmp_path_factory.mktemp("mnist")
    arrays = fake_data.write_originals(tmp / "my_mnist", "mnist", N_TRAIN, N_TEST)
    data.prepare("mnist", str(tmp / "tfds"), str(tmp / "my_mnist"), verify=False)  # not the published files
    return str(tmp / "tfds"), arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"].astype(np.int64)


@pytest.fixture(scope="module")
def train(mnist):
    return make_image_source("mnist", mnist[0], "train")


# ----------------------------------------------------------------------------- builds and sources

def test_tiny_mnist_build_keeps_original_examples_in_order(mnist, train):
    data_dir, images, labels = mnist
    assert len(train) == N_TRAIN and len(make_image_source("mnist", data_dir, "test")) == N_TEST
    assert len(make_image_source("mnist", data_dir, "train+test")) == N_TRAIN + N_TEST
    records = train.records.__getitems__(list(range(N_TRAIN)))
    np.testing.assert_array_equal(np.stack([r["image"][..., 0] for r in records]), images)
    np.testing.assert_array_equal([r["label"] for r in records], labels)


def test_pixels_map_0_to_minus_1_and_255_to_1(mnist, train):
    _, images, labels = mnist
    batch = train.__getitems__(np.arange(32))
    chex.assert_shape(batch["image"], (32, 28, 28, 1))
    chex.assert_type([batch["image"], batch["label"]], [np.float32, np.int32])
    np.testing.assert_allclose(batch["image"][..., 0], images[:32] / 127.5 - 1.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(batch["label"], labels[:32])
    assert (images[:32] == 0).any() and (images[:32] == 255).any()
    np.testing.assert_array_equal(batch["image"][..., 0][images[:32] == 0], -1.0)
    np.testing.assert_array_equal(batch["image"][..., 0][images[:32] == 255], 1.0)
    one = train[3]
    chex.assert_shape(one["image"], (28, 28, 1))
    assert one["label"].dtype == np.int32 and one["label"] == labels[3]


def test_pad_to_32_with_background_and_resize_to_64(mnist, train):
    data_dir = mnist[0]
    padded = make_image_source("mnist", data_dir, "train", image_size=32)[5]["image"]
    chex.assert_shape(padded, (32, 32, 1))
    np.testing.assert_array_equal(padded[2:30, 2:30], train[5]["image"])
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    np.testing.assert_array_equal(padded[..., 0][border], -1.0)
    resized = make_image_source("mnist", data_dir, "train", image_size=64).__getitems__([0, 1])["image"]
    chex.assert_shape(resized, (2, 64, 64, 1))
    assert resized.min() >= -1.0 and resized.max() <= 1.0 and resized.max() > 0.9
    native = make_image_source("mnist", data_dir, "train", image_size=28)[5]["image"]
    np.testing.assert_array_equal(native, train[5]["image"])


def test_fit_image_crops_non_square_to_its_centre_before_resizing():
    image = np.zeros((10, 6, 3), np.uint8)
    image[:2], image[-2:] = 255, 255  # bands outside the central 6x6 square
    np.testing.assert_array_equal(fit_image(image, 12, "resize"), np.zeros((12, 12, 3), np.uint8))
    np.testing.assert_array_equal(fit_image(np.full((6, 6, 1), 77, np.uint8), 15, "resize"), 77)
    np.testing.assert_array_equal(fit_image(image, None, center_crop=4), image[3:7, 1:5])
    with pytest.raises(ValueError, match="'stretch'.*allowed.*'auto', 'pad', 'resize'"):
        fit_image(image, 12, "stretch")
    with pytest.raises(ValueError, match="fit='pad' needs image_size >= .*10x6"):
        fit_image(image, 8, "pad")


def test_fashion_mnist_from_ungzipped_files(tmp_path):
    arrays = fake_data.write_originals(tmp_path / "fashion", "fashion_mnist", N_TRAIN, N_TEST, compress=False)
    assert not list((tmp_path / "fashion").glob("*.gz"))
    source = make_image_source("fashion_mnist", str(tmp_path / "tfds"), "test", manual_dir=str(tmp_path / "fashion"),
                               verify=False)
    batch = source.__getitems__(np.arange(N_TEST))
    np.testing.assert_array_equal(batch["label"], arrays["t10k-labels-idx1-ubyte"])
    np.testing.assert_allclose(batch["image"][..., 0], arrays["t10k-images-idx3-ubyte"] / 127.5 - 1, atol=1e-6)


def test_read_idx_rejects_a_bad_magic_number():
    with pytest.raises(ValueError, match="idx file is not an unsigned-byte idx file \\(magic bytes 0x0000 0x0d"):
        tfds_local.read_idx(io.BytesIO(struct.pack(">HBBI", 0, 0x0D, 1, 3) + b"abc"))


def test_prepare_is_idempotent_and_refuses_a_different_size(mnist):
    data_dir = mnist[0]
    info = os.path.join(tfds_local.local_builder("mnist", data_dir).data_dir, "dataset_info.json")
    before = os.stat(info).st_mtime_ns
    data.prepare("mnist", data_dir)  # already built: no files needed, nothing rewritten
    assert os.stat(info).st_mtime_ns == before
    with pytest.raises(ValueError, match="max_examples=None, not the requested 10"):
        data.prepare("mnist", data_dir, max_examples=10)


def test_max_examples_and_cli_build_verified_from_tfds_default_manual_folder(tmp_path, capsys, monkeypatch):
    """No --data_dir, no --manual_dir: TFDS's default data_dir and its downloads/manual/<name>; the files pass
    verification against the checksums and example counts they are published with (here: set to theirs)."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    manual = tmp_path / "downloads" / "manual" / "mnist"
    fake_data.write_originals(manual, "mnist", 30, 24)
    monkeypatch.setitem(tfds_local.PUBLISHED, "mnist", fake_data.published_as(manual, {"train": 30, "test": 24}))
    cli_main(["--dataset", "stacked_mnist", "--max_examples", "20"])
    assert (f"mnist: {tmp_path / 'mnist' / '1.0.0'} (test: 20, train: 20); original files verified against their "
            "published checksums") in capsys.readouterr().out
    with pytest.raises(ValueError, match="max_examples=20, not the requested None"):
        data.prepare("mnist", str(tmp_path))


def test_original_files_are_looked_for_in_manual_dir_then_gan_jax_data_then_tfds_manual(tmp_path, monkeypatch):
    """Three folders of fake MNIST drawn with other seeds: the build reads the first place of the search order
    that holds the files: manual_dir, $GAN_JAX_DATA/mnist, data_dir/downloads/manual/mnist."""
    first_image = {}
    for seed, folder in enumerate(("mine", "env/mnist", "tfds/downloads/manual/mnist")):
        first_image[folder] = fake_data.write_originals(tmp_path / folder, "mnist", 12, 4, seed=seed)[
            "train-images-idx3-ubyte"][0]
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    for manual_dir, built_from in (("", "env/mnist"), (str(tmp_path / "mine"), "mine"),
                                   (str(tmp_path / "empty"), "env/mnist")):
        data_dir = tmp_path / f"built_with_manual_dir_{os.path.basename(manual_dir)}"
        image = make_image_source("mnist", str(data_dir), "train", manual_dir=manual_dir, verify=False)[0]["image"]
        np.testing.assert_allclose(image[..., 0], first_image[built_from] / 127.5 - 1, atol=1e-6)
    monkeypatch.delenv(data.DATA_ENV)
    image = make_image_source("mnist", str(tmp_path / "tfds"), "train", verify=False)[0]["image"]
    np.testing.assert_allclose(image[..., 0], first_image["tfds/downloads/manual/mnist"] / 127.5 - 1, atol=1e-6)


def test_unknown_dataset_lists_the_allowed_names(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'svhn'") as err:
        make_image_source("svhn", str(tmp_path), "train")
    for name in data.DATASET_NAMES:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="unknown split 'valid'.*allowed: \\('train', 'test', 'train\\+test'\\)"):
        make_image_source("mnist", str(tmp_path), "valid")


def test_missing_dataset_names_files_folders_and_flag(tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as err:
        make_image_source("fashion_mnist", str(tmp_path / "tfds"), "train", manual_dir=str(partial))
    msg = str(err.value)
    assert f"not built under data_dir '{tmp_path / 'tfds'}'" in msg
    assert f"{partial} (lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz" in msg
    assert f"{partial / 'fashion_mnist'} (no such folder); {tmp_path / 'tfds' / 'downloads' / 'manual'}/" in msg
    assert "--manual_dir" in msg and "data.manual_dir" in msg and "$GAN_JAX_DATA/fashion_mnist/" in msg
    assert msg.endswith("Get the files from github.com/zalandoresearch/fashion-mnist.") and "\n" not in msg
    for stem in IDX_STEMS:
        assert stem + ".gz" in msg
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "originals"))
    with pytest.raises(FileNotFoundError) as err:
        make_image_source("cifar10", str(tmp_path / "tfds"), "train")
    looked = (f"Looked in: {tmp_path / 'originals' / 'cifar10'} (no such folder); {tmp_path / 'tfds' / 'downloads'}"
              f"/manual/cifar10 (no such folder); {tmp_path / 'tfds' / 'downloads' / 'manual'} (no such folder).")
    assert "cifar-10-python.tar.gz" in str(err.value) and looked in str(err.value)


# ----------------------------------------------------------------------------- Stacked MNIST

def test_stacked_mnist_channels_are_the_drawn_digits(mnist, train):
    data_dir, _, labels = mnist
    stacked = make_image_source("stacked_mnist", data_dir, "train", stacked_seed=3)
    assert len(stacked) == 128_000
    idx = np.array([0, 1, 77, 127_999])
    batch = stacked.__getitems__(idx)
    digits = stacked.records.digit_indices(idx)
    np.testing.assert_array_equal(digits, [[splitmix64_reference(splitmix64_reference(3) + 3 * i + c) % N_TRAIN
                                            for c in range(3)] for i in idx.tolist()])
    chex.assert_shape(batch["image"], (4, 28, 28, 3))
    for k, (a, b, c) in enumerate(digits):
        np.testing.assert_array_equal(batch["label"][k], 100 * labels[a] + 10 * labels[b] + labels[c])
        for channel, d in enumerate((a, b, c)):
            np.testing.assert_array_equal(batch["image"][k, ..., channel], train[d]["image"][..., 0])
    again = make_image_source("stacked_mnist", data_dir, "train", stacked_seed=3).__getitems__(idx)
    np.testing.assert_array_equal(again["image"], batch["image"])
    other = make_image_source("stacked_mnist", data_dir, "train", stacked_seed=4, stacked_size=10)
    assert len(other) == 10 and not np.array_equal(other.records.digit_indices(idx[:2]), digits[:2])
    with pytest.raises(IndexError, match="0..9"):
        other[10]
    with pytest.raises(ValueError, match="apply only to stacked_mnist, not to 'mnist'"):
        make_image_source("mnist", data_dir, "train", stacked_seed=1)


def test_stacked_mnist_reads_each_digit_record_once():
    from gan_jax.data.sources import StackedMnistRecords

    class Digits:
        def __init__(self):
            self.reads = []

        def __len__(self):
            return 50

        def __getitems__(self, idx):
            self.reads += idx
            return [{"image": np.full((28, 28, 1), i, np.uint8), "label": i % 10} for i in idx]

    digits = Digits()
    stacked = StackedMnistRecords(digits, num_examples=1000, seed=1)
    first = stacked.__getitems__(np.arange(1000))
    assert sorted(digits.reads) == list(range(50))  # 3,000 digits drawn, each of the 50 records read once
    again = stacked.__getitems__([5, 999])
    assert len(digits.reads) == 50
    d = stacked.digit_indices([5, 999])
    for k, i in enumerate((5, 999)):
        np.testing.assert_array_equal(again[k]["image"], first[i]["image"])
        np.testing.assert_array_equal(again[k]["image"][0, 0], d[k])  # channel c holds digit record d[k, c]
        assert again[k]["label"] == 100 * (d[k, 0] % 10) + 10 * (d[k, 1] % 10) + d[k, 2] % 10


def test_stacked_digits_are_uniform_and_independent():
    n = 30_000
    d = stacked_digit_indices(0, np.arange(n), 10)
    assert d.min() == 0 and d.max() == 9
    for c in range(3):  # each count is Binomial(n, 0.1): sd 52; 5 sd either side
        np.testing.assert_allclose(np.bincount(d[:, c], minlength=10), n / 10, atol=260)
    pairs = np.bincount(10 * d[:, 0] + d[:, 2], minlength=100)  # Binomial(n, 0.01): sd 17
    np.testing.assert_allclose(pairs, n / 100, atol=86)
    modes = np.bincount(100 * d[:, 0] + 10 * d[:, 1] + d[:, 2], minlength=1000)
    assert (modes > 0).all()  # all 1000 modes, each expected 30 times


# ----------------------------------------------------------------------------- pipeline

def test_same_seed_same_batch_other_seed_other_batch(train):
    a, b = Pipeline(train, batch_size=16, seed=7), Pipeline(train, batch_size=16, seed=7)
    for step in (0, 5, 40):
        chex.assert_trees_all_equal(a.batch(step), b.batch(step))
    assert not np.array_equal(a.batch(0)["label"], Pipeline(train, batch_size=16, seed=8).batch(0)["label"])
    batch = a.batch(3)
    chex.assert_shape([batch["image"], batch["label"]], [(16, 28, 28, 1), (16,)])
    raw = Pipeline(train.records, batch_size=16, seed=7).batch(3)  # a source of per-example dicts
    np.testing.assert_allclose(raw["image"] / 127.5 - 1, batch["image"], rtol=0, atol=1e-6)


def test_importing_the_package_loads_neither_tfds_nor_jax():
    code = "import sys, gan_jax.data; print(sorted(m for m in ('tensorflow_datasets', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def splitmix64_reference(x):
    """SplitMix64 in Python integers (Vigna's splitmix64.c, one step from state x)."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_splitmix64_matches_the_reference_generator():
    assert splitmix64_reference(0) == 0xE220A8397B1DCDAF  # splitmix64.c's first output for seed 0
    x = np.array([0, 1, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(splitmix64(x), [splitmix64_reference(int(v)) for v in x])


def test_each_epoch_is_a_fresh_permutation(train):
    p = Pipeline(train, batch_size=60, seed=1)  # 256 examples: 4 steps, 16 left out per epoch
    assert p.steps_per_epoch == 4
    for epoch in (0, 1):
        idx = np.concatenate([p.global_indices(s)[0] for s in range(4 * epoch, 4 * epoch + 4)])
        key = splitmix64_reference(splitmix64_reference(1) + epoch)
        expected = sorted(range(N_TRAIN), key=lambda i: splitmix64_reference(splitmix64_reference(key) + i))
        np.testing.assert_array_equal(idx, expected[:240])
        assert len(np.unique(idx)) == 240
    assert not np.array_equal(p.global_indices(0)[0], p.global_indices(4)[0])
    np.testing.assert_array_equal(np.sort(epoch_permutation(9, 3, 1000)), np.arange(1000))
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        Pipeline(train, batch_size=60, seed=-1)


def test_host_shards_are_disjoint_and_make_up_the_global_batch(train):
    whole = Pipeline(train, batch_size=32, seed=2)
    hosts = [Pipeline(train, batch_size=32, seed=2, process_index=p, process_count=4) for p in range(4)]
    for step in (0, 9, 17):
        parts = [h.batch(step) for h in hosts]
        for part in parts:
            chex.assert_shape(part["image"], (8, 28, 28, 1))
        chex.assert_trees_all_equal(jax.tree.map(lambda *x: np.concatenate(x), *parts), whole.batch(step))
        idx = whole.global_indices(step)[0]
        assert len(set(idx.tolist())) == 32  # the four slices share no example


def test_resume_at_a_step_equals_the_uninterrupted_stream(train):
    p = Pipeline(train, batch_size=16, seed=5, prefetch=3)
    straight = list(itertools.islice(iter(p), 20))  # crosses the epoch boundary at step 16
    resumed = list(Pipeline(train, batch_size=16, seed=5).iterate(13, num_steps=7))
    assert len(resumed) == 7
    for x, y in zip(straight[13:], resumed):
        chex.assert_trees_all_equal(x, y)


def test_closing_the_iterator_stops_its_thread(train):
    def prefetchers():
        return sum(t.name == PREFETCH_THREAD_NAME for t in threading.enumerate())

    it = Pipeline(train, batch_size=16, seed=0, prefetch=2).iterate()
    assert prefetchers() == 0  # nothing starts before the first batch is asked for
    next(it)
    assert prefetchers() == 1
    it.close()
    assert prefetchers() == 0


def test_errors_in_the_background_thread_reach_the_consumer():
    class Broken:
        def __len__(self):
            return 8

        def __getitem__(self, i):
            raise KeyError(f"record {i} is corrupt")

    with pytest.raises(KeyError, match="is corrupt"):
        next(Pipeline(Broken(), batch_size=4, seed=0).iterate())


def test_keep_remainder_pads_and_masks_the_last_batch(train):
    p = Pipeline(train, batch_size=96, seed=0, drop_remainder=False, shuffle=False, prefetch=0)
    assert p.steps_per_epoch == 3
    batches = list(p.iterate(0, 3))
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(images, train.__getitems__(np.arange(N_TRAIN))["image"])
    np.testing.assert_array_equal(batches[2]["mask"], np.arange(96) < N_TRAIN - 192)
    chex.assert_shape(batches[2]["image"], (96, 28, 28, 1))
    host = Pipeline(train, batch_size=96, seed=0, drop_remainder=False, process_index=1, process_count=2)
    assert host.batch(2)["mask"].sum() == 16  # host 1 holds examples 48..95 of the last global batch: 16 real


def test_pipeline_rejects_bad_batch_settings(train):
    with pytest.raises(ValueError, match="batch_size 30 must be divisible by process_count 4"):
        Pipeline(train, batch_size=30, seed=0, process_count=4)
    with pytest.raises(ValueError, match="process_index 2 must be in 0..1"):
        Pipeline(train, batch_size=32, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="batch_size 512 exceeds the 256 examples"):
        Pipeline(train, batch_size=512, seed=0)


# ----------------------------------------------------------------------------- cifar10 and celeb_a

def test_cifar10_from_batches_folder_and_tarball(tmp_path):
    blobs = fake_data.write_cifar(tmp_path / "user", 3, 2)
    assert fake_data.write_cifar(tmp_path / "tar", 3, 2, tarball=True) == blobs
    first = pickle.loads(blobs["data_batch_1"])
    for manual in (tmp_path / "user", tmp_path / "tar"):
        source = make_image_source("cifar10", str(manual / "tfds"), "train", manual_dir=str(manual), verify=False)
        assert len(source) == 15
        ex = source[1]
        chex.assert_shape(ex["image"], (32, 32, 3))
        np.testing.assert_allclose(ex["image"][4, 7], first[b"data"][1].reshape(3, 32, 32)[:, 4, 7] / 127.5 - 1,
                                   rtol=0, atol=1e-6)  # channel-first rows of the pickle -> HWC
        assert ex["label"] == first[b"labels"][1]
        assert len(make_image_source("cifar10", str(manual / "tfds"), "test")) == 2


def test_cifar_reader_refuses_pickles_that_run_code():
    evil = pickle.dumps({b"data": __import__("os").getcwd}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refers to posix.getcwd"):
        tfds_local._cifar_batch(evil, "data_batch_1")


def test_celeb_a_from_aligned_jpegs(tmp_path):
    fake_data.write_celeba(tmp_path, [0, 0, 1, 2, 0])
    data_dir = str(tmp_path / "tfds")
    train = make_image_source("celeb_a", data_dir, "train", manual_dir=str(tmp_path), verify=False)
    assert len(train) == 3 and len(make_image_source("celeb_a", data_dir, "validation")) == 1
    ex = train[2]  # the third train image is 000005.jpg
    assert set(ex) == {"image"}  # CelebA has no class label
    decoded = np.asarray(Image.open(tmp_path / "img_align_celeba" / "000005.jpg"))
    np.testing.assert_allclose(ex["image"], decoded / 127.5 - 1, rtol=0, atol=1e-6)
    small = make_image_source("celeb_a", data_dir, "test", image_size=64, center_crop=108)
    chex.assert_shape(small.__getitems__([0])["image"], (1, 64, 64, 3))


# ----------------------------------------------------------------------------- devices

@pytest.mark.parametrize("num_devices", [1, 2])
def test_prefetch_to_devices_keeps_size_batches_in_flight(num_devices):
    batches = [{"image": np.full((4, 2), s, np.float32), "label": np.arange(4, dtype=np.int32) + s}
               for s in range(5)]
    pulled = []

    def source():
        for b in batches:
            pulled.append(1)
            yield b

    sharding = None
    if num_devices == 2:
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    it = prefetch_to_devices(source(), size=2, sharding=sharding)
    first = next(it)
    assert len(pulled) == 2
    out = [first, *it]
    assert len(pulled) == 5 and len(out) == 5
    for s, b in enumerate(out):
        assert isinstance(b["image"], jax.Array)
        chex.assert_trees_all_equal(jax.device_get(b), batches[s])
        if sharding is not None:
            assert b["image"].sharding == sharding
            assert [sh.data.shape for sh in b["image"].addressable_shards] == [(2, 2), (2, 2)]
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        next(prefetch_to_devices(source(), size=0))


def test_split_for_devices():
    out = split_for_devices({"image": np.zeros((8, 3, 3, 1)), "label": np.arange(8)}, 4)
    chex.assert_shape([out["image"], out["label"]], [(4, 2, 3, 3, 1), (4, 2)])
    np.testing.assert_array_equal(out["label"][1], [2, 3])
    with pytest.raises(ValueError, match="batch dimension 8 must be divisible by num_devices 3"):
        split_for_devices({"label": np.arange(8)}, 3)


# ----------------------------------------------------------------------------- the real files

def test_full_real_mnist(tmp_path):
    data_dir = str(tmp_path)
    data.prepare("mnist", data_dir, str(fake_data.real_originals("mnist")))
    train, test = (tfds_local.load_records("mnist", data_dir, s) for s in ("train", "test"))
    assert (len(train), len(test)) == (60_000, 10_000)
    labels = np.array([r["label"] for r in train.__getitems__(list(range(60_000)))])
    np.testing.assert_array_equal(np.bincount(labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
