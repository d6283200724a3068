"""noisy from Python: the client of `noisy serve`, the store reader, the torch dataset.

    import noisy
    with noisy.connect("unix:/tmp/noisy.sock") as c:      # numpy only
        for batch in c.batches(10): ...
    with noisy.open_store("data.noisy") as store:          # needs the `lmdb` package
        for s in store.samples(): ...
    from noisy.torch import NoisyIterableDataset           # needs torch

numpy is the only hard dependency; `lmdb` (store reading) and `torch` are imported
only by what needs them (pip extras `store` and `torch`).
"""
from .client import Client, LabelSession, ProtocolError, connect

__version__ = "0.1.0"
__all__ = ["Client", "LabelSession", "ProtocolError", "connect", "open_store", "StoreError"]


def open_store(path):
    """Opens a store read-only (see `noisy.store.Store`); needs the `lmdb` package."""
    from .store import open_store as _open_store
    return _open_store(path)


def __getattr__(name):
    # StoreError lives with the reader, which imports lmdb: load it only when asked for.
    if name == "StoreError":
        from .store import StoreError
        return StoreError
    raise AttributeError(f"module 'noisy' has no attribute {name!r}")
