"""Verified data: original files checked against their published size and SHA-256 before a build, value checks
on whatever is read, and the opt-out for files that are deliberately not the published ones.

Tiny files in the real formats (idx, CIFAR's pickles in a tarball, CelebA's partition list), checked against the
published values or against checksums the test publishes for them; the real files only in the test of the checksum
table, which reads them from $GAN_JAX_DATA and is skipped where that does not hold them.
"""
import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest

from gan_jax import data
from gan_jax.data import tfds_local
from gan_jax.data.__main__ import main as cli_main
from gan_jax.data.sources import InMemorySource, make_image_source
from tests import fake_data
from tests.fake_data import idx_bytes

N_TRAIN, N_TEST = 12, 4
OPT_OUT = ("verify=False", "--no_verify", "GAN_JAX_UNVERIFIED_DATA=1")


@pytest.fixture(autouse=True)
def verification_on(monkeypatch):
    """Each test starts with verification on, whatever the caller's environment says."""
    monkeypatch.delenv(tfds_local.UNVERIFIED_ENV, raising=False)


def write_idx_dir(root, compress=True, seed=0):
    """The four MNIST files under their published names, tiny fake MNIST under valid headers; their arrays."""
    return fake_data.write_originals(root, "mnist", N_TRAIN, N_TEST, seed=seed, compress=compress)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- checksums and the opt-out

def test_files_matching_their_published_checksums_build_verified_and_one_changed_byte_is_refused(tmp_path,
                                                                                                 monkeypatch):
    manual = tmp_path / "mnist"
    arrays = write_idx_dir(manual)
    monkeypatch.setitem(tfds_local.PUBLISHED, "mnist", fake_data.published_as(manual, {"train": N_TRAIN,
                                                                                       "test": N_TEST}))
    data.prepare("mnist", str(tmp_path / "tfds"), str(manual))
    assert tfds_local.local_builder("mnist", str(tmp_path / "tfds")).info.metadata["verified"] is True
    labels = tfds_local.load_records("mnist", str(tmp_path / "tfds"), "test").__getitems__(list(range(N_TEST)))
    np.testing.assert_array_equal([r["label"] for r in labels], arrays["t10k-labels-idx1-ubyte"])

    path = manual / "t10k-labels-idx1-ubyte.gz"
    changed = bytearray(path.read_bytes())
    changed[-8] ^= 1  # the gzip trailer's CRC-32: the same size, other bytes
    path.write_bytes(bytes(changed))
    with pytest.raises(ValueError, match=f"{path} is not the published file: {len(changed)} bytes, SHA-256 "
                                         f"{sha256(path)}; expected {len(changed)} bytes"):
        data.prepare("mnist", str(tmp_path / "tfds2"), str(manual))


def test_other_files_under_the_published_names_are_refused_naming_the_file(tmp_path):
    manual, data_dir = tmp_path / "mnist", str(tmp_path / "tfds")
    arrays = write_idx_dir(manual)
    with pytest.raises(ValueError) as err:
        data.prepare("mnist", data_dir, str(manual))
    msg, bad = str(err.value), manual / "train-images-idx3-ubyte.gz"
    assert msg.startswith(f"{bad} is not the published file: {bad.stat().st_size} bytes, SHA-256 {sha256(bad)}; ")
    assert ("expected 9912422 bytes, SHA-256 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609. "
            "Re-download it from yann.lecun.com/exdb/mnist") in msg
    for hint in OPT_OUT:
        assert hint in msg
    assert "\n" not in msg
    assert not tfds_local.local_builder("mnist", data_dir).is_prepared()

    data.prepare("mnist", data_dir, str(manual), verify=False)  # the same files, deliberately not the published ones
    builder = tfds_local.local_builder("mnist", data_dir)
    assert builder.info.metadata["verified"] is False
    train = tfds_local.load_records("mnist", data_dir, "train")
    records = train.__getitems__(list(range(N_TRAIN)))
    np.testing.assert_array_equal(np.stack([r["image"][..., 0] for r in records]), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal([r["label"] for r in records], arrays["train-labels-idx1-ubyte"])


def test_a_file_of_the_published_size_with_other_bytes_is_refused(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5148, dtype=np.uint8).tobytes())
    originals = tfds_local.PUBLISHED["fashion_mnist"]
    with pytest.raises(ValueError) as err:
        tfds_local.check_published(path, originals.files[path.name], originals.source)
    assert (f"{path} is not the published file: 5148 bytes, SHA-256 {sha256(path)}; expected 5148 bytes, SHA-256 "
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5. Re-download it from "
            "github.com/zalandoresearch/fashion-mnist") in str(err.value)


def test_ungzipped_files_are_held_to_the_published_example_counts(tmp_path):
    manual = tmp_path / "fashion"
    write_idx_dir(manual, compress=False)
    with pytest.raises(ValueError) as err:
        make_image_source("fashion_mnist", str(tmp_path / "tfds"), "train", manual_dir=str(manual))
    msg = str(err.value)
    assert f"{manual}: the train split read from these files holds {N_TRAIN} examples, the published " \
           "fashion_mnist 60000. Re-download the original files from github.com/zalandoresearch/fashion-mnist" in msg
    for hint in OPT_OUT:
        assert hint in msg


def test_opt_out_by_environment_variable_and_flag(tmp_path, monkeypatch, capsys):
    manual = tmp_path / "mine"
    arrays = write_idx_dir(manual, seed=2)
    monkeypatch.setenv(tfds_local.UNVERIFIED_ENV, "1")  # how a run launched from a config opts out
    test = make_image_source("mnist", str(tmp_path / "env"), "test", manual_dir=str(manual))
    np.testing.assert_array_equal(test.__getitems__(np.arange(N_TEST))["label"], arrays["t10k-labels-idx1-ubyte"])
    monkeypatch.setenv(tfds_local.UNVERIFIED_ENV, "yes")
    with pytest.raises(ValueError, match="GAN_JAX_UNVERIFIED_DATA must be 1 .*, 0 or unset, got 'yes'"):
        data.prepare("mnist", str(tmp_path / "other"), str(manual))
    monkeypatch.delenv(tfds_local.UNVERIFIED_ENV)
    cli_main(["--dataset", "fashion_mnist", "--manual_dir", str(manual), "--data_dir", str(tmp_path / "cli"),
              "--no_verify"])
    assert (f"fashion_mnist: {tmp_path / 'cli' / 'fashion_mnist' / '1.0.0'} (test: {N_TEST}, train: {N_TRAIN}); "
            "original files NOT verified against their published checksums") in capsys.readouterr().out


def test_cifar10_and_celeb_a_files_are_checked_too(tmp_path):
    fake_data.write_cifar(tmp_path / "cifar", 3, 3)
    with pytest.raises(ValueError, match="the train split read from these files holds 15 examples, the published "
                                         "cifar10 50000. Re-download the original files from www.cs.toronto.edu"):
        make_image_source("cifar10", str(tmp_path / "tfds1"), "train", manual_dir=str(tmp_path / "cifar"))
    fake_data.write_cifar(tmp_path / "tar", 3, 3, tarball=True)
    tar = tmp_path / "tar" / "cifar-10-python.tar.gz"
    with pytest.raises(ValueError, match=f"{tar} is not the published file: .*expected 170498071 bytes, SHA-256 "
                                         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"):
        make_image_source("cifar10", str(tmp_path / "tfds2"), "train", manual_dir=str(tar.parent))

    celeb = tmp_path / "celeb"
    (celeb / "img_align_celeba").mkdir(parents=True)
    (celeb / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(ValueError, match="list_eval_partition.txt is not the published file: .*expected 2836386 "
                                         "bytes, SHA-256 fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e"):
        make_image_source("celeb_a", str(tmp_path / "tfds3"), "train", manual_dir=str(celeb))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_checksum_table_matches_the_real_files(name):
    folder = fake_data.real_originals(name)
    published = tfds_local.PUBLISHED[name].files
    assert sorted(published) == sorted(p.name for p in folder.glob("*.gz"))
    for file_name, expected in published.items():
        path = folder / file_name
        assert (path.stat().st_size, sha256(path)) == (expected.size, expected.sha256), path
    tfds_local.verify_originals(name, folder)


# ----------------------------------------------------------------------------- value checks, verified or not

@pytest.mark.parametrize("compress", [True, False])
def test_a_truncated_idx_file_is_refused_with_its_byte_counts(tmp_path, compress):
    manual = tmp_path / "mine"
    arrays = write_idx_dir(manual, compress=compress)
    raw = idx_bytes(arrays["train-images-idx3-ubyte"])[:-100]
    path = manual / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(raw) if compress else raw)
    full = 16 + N_TRAIN * 28 * 28
    with pytest.raises(ValueError) as err:
        data.prepare("mnist", str(tmp_path / "tfds"), str(manual), verify=False)
    assert str(err.value) == (f"{path}{' (decompressed)' if compress else ''} is truncated: its idx header (shape "
                              f"({N_TRAIN}, 28, 28)) makes {full} bytes, it holds {full - 100}; replace it with an "
                              "intact copy")


def test_a_cut_gzip_stream_and_a_cut_header_are_refused(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match=f"{path} is a damaged gzip file .*; replace it with an intact copy"):
        tfds_local._read_idx_file(path)
    with pytest.raises(ValueError, match="labels is truncated: 6 bytes, less than its 8-byte idx header"):
        tfds_local.read_idx(io.BytesIO(bytes([0, 0, 8, 1, 0, 0])), "labels")
    with pytest.raises(ValueError, match=r"labels is too long: its idx header \(shape \(2,\)\) makes 10 bytes, it "
                                         "holds 11"):
        tfds_local.read_idx(io.BytesIO(idx_bytes(np.arange(2, dtype=np.uint8)) + b"x"), "labels")


def test_labels_outside_0_to_9_are_refused(tmp_path):
    manual = tmp_path / "mine"
    arrays = write_idx_dir(manual)
    labels = arrays["t10k-labels-idx1-ubyte"].copy()
    labels[1] = 10
    (manual / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError, match=f"{manual / 't10k-labels-idx1-ubyte.gz'} holds 1 labels outside 0..9 "
                                         r"\(e.g. 10\)"):
        data.prepare("mnist", str(tmp_path / "tfds"), str(manual), verify=False)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="data_batch_2 holds 1 labels outside 0..9 \\(e.g. -1\\)"):
        tfds_local._cifar_batch(fake_data.cifar_batch(rng, 2, labels=[3, -1]), "data_batch_2")
    short_rows = pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3: data \(2, 3000\) and labels \(2,\) do not make N rows"):
        tfds_local._cifar_batch(short_rows, "data_batch_3")


def test_celeb_a_partition_lines_are_checked(tmp_path):
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(ValueError, match="1 lines are not '<image file> <0, 1 or 2>' \\(e.g. '000002.jpg 3'\\)"):
        tfds_local._celeba_files(tmp_path, "train")


def test_in_memory_source_refuses_non_finite_or_out_of_range_pixels():
    images = np.zeros((4, 2, 2, 1), np.float32)
    labels = np.arange(4, dtype=np.int32) * 7  # integer arrays are not pixels
    assert len(InMemorySource({"image": images, "label": labels})) == 4
    for value in (np.nan, np.inf):
        bad = images.copy()
        bad[2, 1, 0, 0] = value
        with pytest.raises(ValueError, match="InMemorySource array 'image' holds 1 NaN or infinite pixels"):
            InMemorySource({"image": bad, "label": labels})
    with pytest.raises(ValueError, match=r"array 'target' holds pixels in \[0, 255\], outside \[-1, 1\]; scale"):
        InMemorySource({"target": np.linspace(0, 255, 16, dtype=np.float32).reshape(4, 2, 2, 1)})
