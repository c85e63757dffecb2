"""Datasets: the real MNIST files (from PYNN_DATA_DIR), IDX parsing, corrupt files, checksum
mismatches, and the offline error. No network: the downloader is replaced in every test that
could reach it."""
import gzip
import os
import shutil

import numpy as np
import pytest

from pynn import datasets
from pynn.datasets import mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# read at import: fixtures below remove the variable to simulate a machine without the data
DATA_DIR = os.environ.get("PYNN_DATA_DIR")


def real_mnist_dir():
    data_dir = DATA_DIR
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "mnist")):
        pytest.skip("PYNN_DATA_DIR with mnist/ is not available")
    return os.path.join(data_dir, "mnist")


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails like an unreachable host, and is recorded."""
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(mnist, "_fetch", refuse)
    return calls


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No PYNN_DATA_DIR and an empty home: nothing to find locally."""
    monkeypatch.delenv("PYNN_DATA_DIR", raising=False)
    monkeypatch.delenv("PYNN_OFFLINE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


# --- the real data ------------------------------------------------------------------------------
def test_load_real_mnist(no_network):
    real_mnist_dir()
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS
    assert x_train.max() == 255 and x_train.min() == 0
    assert no_network == []


def test_load_from_explicit_path_with_plain_files(tmp_path, no_network, isolated_home):
    # the same files, decompressed, in a directory given as ``path``
    source = real_mnist_dir()
    target = tmp_path / "plain"
    target.mkdir()
    for base in mnist.FILES.values():
        with gzip.open(os.path.join(source, base + ".gz")) as f:
            (target / base).write_bytes(f.read())
    (_, y_train), (x_test, _) = mnist.load_data(path=str(target))
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS and x_test.shape == (10000, 28, 28)


# --- IDX parsing --------------------------------------------------------------------------------
def test_parse_idx():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(images)), images)
    labels = np.array([3, 1, 4], np.uint8)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(labels)), labels)
    wide = np.array([1, -2, 300], dtype=">i4")
    data = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + wide.tobytes()
    np.testing.assert_array_equal(mnist.parse_idx(data), [1, -2, 300])


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "too short"),
    (b"\x12\x34\x08\x01" + b"\x00" * 8, "not an IDX file"),
    (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),
    (bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big"), "truncated IDX header"),
    (bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 9, "truncated or corrupt"),
])
def test_parse_idx_rejects_bad_data(data, message):
    with pytest.raises(ValueError, match=message):
        mnist.parse_idx(data, "somefile")


# --- corrupt files, checksums, missing data -----------------------------------------------------
def copy_real_files(target):
    source = real_mnist_dir()
    target.mkdir(parents=True, exist_ok=True)
    for base in mnist.FILES.values():
        shutil.copy(os.path.join(source, base + ".gz"), target / (base + ".gz"))
    return target


def test_corrupt_gzip_is_a_clear_error(tmp_path, no_network, isolated_home):
    target = copy_real_files(tmp_path / "d")
    path = target / "train-labels-idx1-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])          # truncated download
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: corrupt gzip"):
        mnist.load_data(path=str(target))


def test_truncated_idx_is_a_clear_error(tmp_path, no_network, isolated_home):
    target = copy_real_files(tmp_path / "d")
    labels = mnist.parse_idx(mnist.read_bytes(str(target / "t10k-labels-idx1-ubyte.gz")))
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    (target / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels)[:-10])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: IDX header declares"):
        mnist.load_data(path=str(target))


def test_checksum_mismatch_is_detected(tmp_path, no_network, isolated_home):
    target = copy_real_files(tmp_path / "d")
    labels = mnist.parse_idx(mnist.read_bytes(str(target / "t10k-labels-idx1-ubyte.gz")))
    labels[0] = (labels[0] + 1) % 10                   # a valid IDX file, different content
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError, match="checksum mismatch"):
        mnist.load_data(path=str(target))
    # the check can be disabled for deliberately modified copies
    (_, _), (_, y_test) = mnist.load_data(path=str(target), verify=False)
    assert y_test[0] == labels[0]


def test_missing_files_and_failing_download_name_where_to_put_them(tmp_path, no_network,
                                                                   isolated_home):
    missing = tmp_path / "nowhere"
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        mnist.load_data(path=str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "train-images-idx3-ubyte.gz" in message and "PYNN_DATA_DIR" in message
    assert os.path.join(".pynn", "datasets", "mnist") in message
    assert isinstance(info.value, OSError)
    assert no_network, "the downloader should have been tried"
    # nothing half-written is left behind
    assert not [p for p in missing.rglob("*") if p.is_file()]


def test_offline_mode_does_not_try_the_network(tmp_path, no_network, isolated_home,
                                               monkeypatch):
    monkeypatch.setenv("PYNN_OFFLINE", "1")
    with pytest.raises(datasets.DatasetUnavailableError, match="PYNN_OFFLINE"):
        mnist.load_data()
    assert no_network == []


def test_download_verifies_and_renames_atomically(tmp_path, monkeypatch, isolated_home):
    """A fake mirror serving the real content: files land complete, checked, under their name;
    a mirror serving wrong content is skipped for the next one."""
    source = real_mnist_dir()
    served = []

    def fake_fetch(url, timeout=None):
        served.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith("https://bad.example/"):
            return gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")
        with open(os.path.join(source, name), "rb") as f:
            return f.read()

    monkeypatch.setattr(mnist, "_fetch", fake_fetch)
    target = tmp_path / "dl"
    mnist.download(str(target), mirrors=("https://bad.example/", "https://good.example/"))
    assert sorted(os.listdir(target)) == sorted(b + ".gz" for b in mnist.FILES.values())
    assert len(served) == 8
    (_, y_train), _ = mnist.load_data(path=str(target))
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS


def test_download_with_every_mirror_bad_reports_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_fetch", lambda url, timeout=None: b"not the data")
    with pytest.raises(datasets.DatasetUnavailableError, match="checksum mismatch"):
        mnist.download(str(tmp_path / "dl"))
    assert not [p for p in (tmp_path / "dl").iterdir()]


def test_keras_npz_file(tmp_path):
    x = np.zeros((2, 28, 28), np.uint8)
    y = np.array([1, 2], np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:1], y_test=y[:1])
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=str(path))
    assert x_train.shape == (2, 28, 28) and y_test.tolist() == [1]


# --- digits -------------------------------------------------------------------------------------
def test_digits():
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data(test_split=0.25, seed=1)
    assert x_train.shape[1:] == (8, 8) and x_train.dtype == np.uint8
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == round(1797 * 0.25)
    assert set(np.unique(y_train)) == set(range(10))
    # 0-16 intensities rescaled to MNIST's 0-255, so x / 255.0 works for both.
    assert x_train.min() == 0 and x_train.max() == 255
    again = datasets.digits.load_data(test_split=0.25, seed=1)
    np.testing.assert_array_equal(again[0][1], y_train)


def test_digits_without_sklearn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match="scikit-learn"):
        datasets.digits.load_data()
