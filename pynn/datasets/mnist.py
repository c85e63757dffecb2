"""MNIST handwritten digits (Keras' ``keras.datasets.mnist.load_data``).

``load_data()`` returns ``((x_train, y_train), (x_test, y_test))``: uint8 images
(60000, 28, 28) / (10000, 28, 28) and uint8 labels 0-9.

Where the four IDX files (``train-images-idx3-ubyte.gz`` etc., gzip or uncompressed) are
looked for, in order:

1. ``path`` (a directory), or a Keras ``mnist.npz`` file when ``path`` names one;
2. ``$PYNN_DATA_DIR/mnist``;
3. ``~/.pynn/datasets/mnist``.

When none has them, they are downloaded into the first of those directories (atomically:
temporary file, checksum, rename), unless ``PYNN_OFFLINE=1``. The MD5 of the *decompressed*
content of every file is checked (re-compressed copies of the data are accepted; corrupt or
different files are not).
"""
import gzip
import hashlib
import os
import tempfile

import numpy as np

from pynn.datasets._errors import DatasetUnavailableError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the decompressed IDX files (the canonical MNIST content).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
EXPECTED_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
_DOWNLOAD_TIMEOUT = 30  # seconds per request

# IDX element types (the third byte of the magic number).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ---------------------------------------------------------------------------------------------
# IDX parsing
# ---------------------------------------------------------------------------------------------
def read_bytes(filename):
    """The file's content, decompressed when it is gzip (detected by its magic bytes)."""
    with open(filename, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"{filename}: corrupt gzip data ({e})") from None
    return data


def parse_idx(data, source="IDX data"):
    """An ndarray from the bytes of an IDX file (magic 0x0000TTDD, DD big-endian int32 dims).

    Raises ValueError naming ``source`` for a bad magic number, an unknown element type, or a
    size that does not match the header.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{source}: not an IDX file (magic number 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{source}: IDX header declares shape {shape} ({expected} bytes of data) but the "
            f"file holds {len(data) - header} bytes: the file is truncated or corrupt")
    array = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _md5(data):
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Locating and downloading
# ---------------------------------------------------------------------------------------------
def candidate_dirs(path=None):
    """The directories searched, in order."""
    dirs = []
    if path is not None:
        dirs.append(os.fspath(path))
    data_dir = os.environ.get("PYNN_DATA_DIR")
    if data_dir:
        dirs.append(os.path.join(data_dir, "mnist"))
    dirs.append(os.path.join(os.path.expanduser("~"), ".pynn", "datasets", "mnist"))
    return dirs


def _find_file(directory, base):
    for name in (base + ".gz", base):
        filename = os.path.join(directory, name)
        if os.path.isfile(filename):
            return filename
    return None


def _find_complete_dir(dirs):
    for directory in dirs:
        if all(_find_file(directory, base) for base in FILES.values()):
            return directory
    return None


def _fetch(url, timeout=_DOWNLOAD_TIMEOUT):
    """The bytes at ``url`` (the network boundary; tests replace it)."""
    import urllib.request  # imported here: network modules slow down `import pynn`

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download(directory, mirrors=MIRRORS, fetch=None, _path_hint=None):
    """Download the four files into ``directory``: verified, then renamed into place.

    Raises DatasetUnavailableError when every mirror fails for a file.
    """
    fetch = fetch or _fetch
    os.makedirs(directory, exist_ok=True)
    for base in FILES.values():
        if _find_file(directory, base):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror + base + ".gz"
            try:
                data = fetch(url)
                content = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
                if _md5(content) != MD5[base]:
                    errors.append(f"{url}: checksum mismatch")
                    continue
            except (OSError, EOFError, ValueError) as e:  # URLError is an OSError
                errors.append(f"{url}: {e}")
                continue
            name = base + ".gz" if data[:2] == b"\x1f\x8b" else base
            _write_atomically(os.path.join(directory, name), data)
            break
        else:
            raise DatasetUnavailableError(
                f"could not download {base}.gz ({'; '.join(errors)}). "
                f"{_where_to_put_files(_path_hint)}")


def _write_atomically(filename, data):
    directory = os.path.dirname(filename)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _where_to_put_files(path=None):
    names = ", ".join(base + ".gz" for base in FILES.values())
    dirs = " or ".join(candidate_dirs(path))
    return (f"Put the MNIST files ({names}; gzip or uncompressed) in {dirs}, "
            "or set PYNN_DATA_DIR to a directory containing mnist/ with them.")


def _offline():
    return os.environ.get("PYNN_OFFLINE", "").lower() in ("1", "true", "yes")


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------
def _load_npz(filename):
    with np.load(filename, allow_pickle=False) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _load_dir(directory, verify=True):
    arrays = {}
    for key, base in FILES.items():
        filename = _find_file(directory, base)
        data = read_bytes(filename)
        array = parse_idx(data, filename)
        if verify and _md5(data) != MD5[base]:
            raise ValueError(
                f"{filename}: checksum mismatch (MD5 of the decompressed content is "
                f"{_md5(data)}, expected {MD5[base]}): the file is corrupt or not MNIST. "
                "Delete it to download it again.")
        if array.shape != EXPECTED_SHAPES[key]:
            raise ValueError(f"{filename}: shape {array.shape}, expected "
                             f"{EXPECTED_SHAPES[key]}")
        arrays[key] = array.astype(np.uint8, copy=False)
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def load_data(path=None, verify=True):
    """Load MNIST: ``((x_train, y_train), (x_test, y_test))``, all uint8.

    path: a directory with the four IDX files, or a Keras ``mnist.npz``; None searches
    ``$PYNN_DATA_DIR/mnist`` then ``~/.pynn/datasets/mnist``, downloading into the first when
    absent. verify: check the MD5 of the decompressed files.

    Raises DatasetUnavailableError (an OSError) when the files are absent and cannot be
    downloaded, and ValueError for a corrupt file.
    """
    if path is not None and os.fspath(path).endswith(".npz"):
        # Keras' form: a cache file name, relative to ~/.keras/datasets unless it exists.
        for filename in (os.fspath(path),
                         os.path.join(os.path.expanduser("~"), ".keras", "datasets",
                                      os.fspath(path))):
            if os.path.isfile(filename):
                return _load_npz(filename)
        path = None
    if path is not None and os.path.isfile(path):
        raise ValueError(f"{path}: expected a directory with the MNIST IDX files or an .npz")
    dirs = candidate_dirs(path)
    directory = _find_complete_dir(dirs)
    if directory is None:
        if _offline():
            raise DatasetUnavailableError(
                f"MNIST files not found and PYNN_OFFLINE is set. {_where_to_put_files(path)}")
        directory = dirs[0]
        try:
            download(directory, _path_hint=path)
        except DatasetUnavailableError:
            raise
        except OSError as e:
            raise DatasetUnavailableError(
                f"could not download MNIST into {directory} ({e}). {_where_to_put_files(path)}"
            ) from e
    return _load_dir(directory, verify=verify)
