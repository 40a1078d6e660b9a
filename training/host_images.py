"""Training images on the device, or read from their image store batch by batch (data/store.py).

A dataset held in memory (the embedded sample, IDX files) goes to the device whole, as does a store on a GPU
with room to spare for it. Otherwise the images stay in their store file and each batch is read from it
(HostImages): resident memory follows the batch, not the dataset, and under DDP each process reads only the
images of its own shard.
"""

from __future__ import annotations

import torch

from ..data import ImageDataset
from ..data.store import RowReader, StoreFile

GPU_SHARE = 0.25  # a store goes onto a GPU whole when it takes at most this share of the free memory
COPY_ROWS = 4096  # rows per host -> device copy when a store goes onto the device whole


class HostImages:
    """uint8 images (N, C, H, W) in a store file, indexed like a tensor on `device`: by a (B,) index tensor
    (a training batch, read in file order) or by a slice (validation, grids: one read)."""

    def __init__(self, reader: RowReader, device: torch.device):
        self.reader, self.device = reader, device
        self.shape = (len(reader), *reader.store.shape)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("HostImages takes slices with step 1")
            images = self.reader.read_range(start, stop)
        else:
            images = self.reader.read(torch.as_tensor(key).cpu().numpy())
        return torch.from_numpy(images).to(self.device)


def split(store: StoreFile, train: bool) -> RowReader:
    return RowReader(store, store.n_test, store.n - store.n_test) if train else RowReader(store, 0, store.n_test)


def fits_on_gpu(store: StoreFile, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return store.n * store.row_bytes <= GPU_SHARE * free


def whole_on_device(reader: RowReader, device: torch.device) -> torch.Tensor:
    """The split copied onto the device a chunk at a time (host memory holds one chunk)."""
    out = torch.empty((len(reader), *reader.store.shape), dtype=torch.uint8, device=device)
    for s in range(0, len(reader), COPY_ROWS):
        out[s : s + COPY_ROWS].copy_(torch.from_numpy(reader.read_range(s, s + COPY_ROWS)))
    return out


def images_for(ds: ImageDataset, device: torch.device):
    """(train images, validation images): tensors on the device, or HostImages reading the store."""
    if ds.stored is None:
        return torch.from_numpy(ds.train).to(device), torch.from_numpy(ds.test).to(device)
    readers = split(ds.stored, True), split(ds.stored, False)
    if device.type == "cpu" or (device.type == "cuda" and not fits_on_gpu(ds.stored, device)):
        return tuple(HostImages(r, device) for r in readers)
    return tuple(whole_on_device(r, device) for r in readers)
