"""Torch-free file helpers: the one atomic writer, the one output-directory check, PNG grids.

Every file vaectl writes goes through write_temp_beside (then os.replace) or append_text, and this is
where an OSError of the filesystem (no space, read-only, no permission, quota) becomes one WriteFailedError
naming the file and what survived it; callers that know more (training, generate --out-dir) reword what
survived, never the mapping itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import UserInputError, WriteFailedError


def temp_path_beside(path: Path) -> Path:
    """A fresh hidden name beside `path` for a write in progress: .NAME.XXXXXXXX.tmp."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


def remove_stale_temp_files(directory: Path, names) -> None:
    """Delete temp files of writes of `names` (glob patterns allowed) that a crash (SIGKILL, power loss) cut short."""
    for name in names:
        for path in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):  # best effort: a read-only directory is reported by the next write
                path.unlink(missing_ok=True)


def os_error_reason(e: OSError) -> str:
    """'No space left on device', 'Read-only file system', ...: what the OS said, without the path."""
    return e.strerror or str(e) or type(e).__name__


def write_failed(path, e: OSError) -> WriteFailedError:
    """The one mapping of a failed write: what the OS said, and that the previous file (if any) is unchanged."""
    path = Path(path)
    survived = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
    return WriteFailedError(path, os_error_reason(e), survived)


def write_temp_beside(path, write: Callable[[io.BufferedWriter], object], fsync: bool = True) -> Path:
    """Write through `write(f)` into a new temp file beside `path` (fsynced) and return its name.

    The caller publishes it with os.replace or deletes it; on any failure here nothing is left behind.
    The file gets the permissions open() would give (mkstemp's 0600 would surprise users).
    An OSError while writing (a full disk at write, flush, fsync or close) raises WriteFailedError.
    """
    path = Path(path)
    tmp = temp_path_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _new_file_mode(path))
    except OSError as e:
        raise write_failed(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_failed(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def append_text(path, text: str) -> None:
    """Append `text` to a log such as metrics.jsonl, fsynced. On failure the file is cut back to its old length
    (best effort), so no torn line is left; raises WriteFailedError."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _new_file_mode(path))
    except OSError as e:
        raise write_failed(path, e) from None
    size = os.fstat(fd).st_size
    try:
        with os.fdopen(fd, "ab") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise WriteFailedError(path, os_error_reason(e), "the lines before are unchanged") from None


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], object], fsync: bool = True) -> None:
    """Write through `write(f)` into a temp file beside `path`, fsync, then os.replace.

    A crash or an exception at any point leaves the old file byte-identical and no temp file behind.
    fsync=False skips both fsyncs (still never a half-written file if the process dies; only a power
    loss can lose it): for writing thousands of small files, where fsync dominates the run time.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UserInputError(f"{path}: directory {directory} does not exist")
    tmp = write_temp_beside(path, write, fsync)
    try:
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_failed(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(directory)


def prepare_out_dir(path, *, parents: bool = False, what: str = "output directory") -> bool:
    """Create `path` if missing and prove it writable; returns True when it was created here.

    The one place that decides whether vaectl may write into a directory: `train --out`, `export --out`
    and `generate --out-dir` all come through here. parents=True also creates missing parents.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a directory")
    created = not path.exists()
    if created and not parents:
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UserInputError(f"{path}: parent directory {parent} does not exist")
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"{path}: cannot write the {what} here ({e.strerror or e})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".vaectl-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserInputError(
            f"{path}: cannot write the {what} here: the directory is not writable ({e.strerror or e})"
        ) from None
    return created


def _new_file_mode(path: Path) -> int:
    """The replaced file's mode, or 0o666 minus the umask for a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_dir(directory) -> None:
    """Make renames into `directory` durable (best effort: not every filesystem allows it)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), fsync)


def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """Float (N, C, H, W) in [0, 1] -> uint8 (N, H, W) or (N, H, W, 3). Refuses non-finite values."""
    if not np.isfinite(images).all():
        raise ValueError("decoder output contains NaN or inf; refusing to write it as an image")
    x = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> one uint8 image with `nrow` images per row."""
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty stack of images, got shape {images.shape}")
    n, h, w = images.shape[:3]
    ncol = max(1, min(nrow, n))
    nrows = (n + ncol - 1) // ncol
    shape = (nrows * (h + padding) + padding, ncol * (w + padding) + padding) + images.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = im
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path, image: np.ndarray, fsync: bool = True) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image), fsync)


def save_grid(path, images: np.ndarray, nrow: int = 8) -> None:
    save_png(path, make_grid(images, nrow=nrow))
