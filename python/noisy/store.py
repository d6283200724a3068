"""Read-only access to a noisy store from Python: needs numpy and the `lmdb` package.

    import noisy
    store = noisy.open_store("data.noisy")
    for s in store.samples():          # dicts: id, split, label, source, format, width, height, data
        ...

The byte layout is documented in schemas/store-layout.md.
"""
from __future__ import annotations

import json
import struct
from typing import Iterator, Optional

import lmdb

SPLITS = {0: "labeled", 1: "unlabeled", 2: "test", 3: "validation"}
FORMATS = {1: "jpeg", 2: "png", 3: "webp"}  # schemas/store-layout.md, "format code"
NO_CLASS = 0xFFFFFFFF
_HEADER = struct.Struct("<BBBBIIIIIBBHQQ32s32s")  # 108 bytes
assert _HEADER.size == 108


class StoreError(Exception):
    pass


def parse_record(sample_id: int, value: bytes) -> dict:
    if len(value) < _HEADER.size:
        raise StoreError(f"sample {sample_id}: record too short")
    (version, split, fmt, channels, cls, width, height, orig_w, orig_h, orig_fmt, flags, src_len,
     size, orig_size, content_hash, data_hash) = _HEADER.unpack_from(value)
    if version != 1:
        raise StoreError(f"sample {sample_id}: record version {version} is not supported")
    source = value[_HEADER.size:_HEADER.size + src_len].decode("utf-8")
    return {
        "id": sample_id, "split": SPLITS[split], "format": FORMATS[fmt], "channels": channels,
        "class_index": None if cls == NO_CLASS else cls, "width": width, "height": height,
        "original_width": orig_w, "original_height": orig_h, "original_format": FORMATS[orig_fmt],
        "reencoded": bool(flags & 1), "byte_size": size, "original_byte_size": orig_size,
        "content_hash": content_hash.hex(), "data_hash": data_hash.hex(), "source": source,
    }


class Store:
    def __init__(self, path: str):
        try:
            self.env = lmdb.open(path, readonly=True, lock=True, max_dbs=16, subdir=True)
        except lmdb.Error as e:
            raise StoreError(f"{path}: not a readable store ({e})") from e
        self.path = path
        try:
            self._meta = self.env.open_db(b"meta", create=False)
            self._samples = self.env.open_db(b"samples", create=False)
            self._images = self.env.open_db(b"images", create=False)
            self._classes = self.env.open_db(b"classes", create=False)
        except lmdb.Error as e:
            raise StoreError(f"{path}: not a noisy store ({e})") from e
        with self.env.begin() as txn:
            fmt = txn.get(b"format", db=self._meta)
        if fmt is None or json.loads(fmt).get("format") != "noisy-store":
            raise StoreError(f"{path}: not a noisy store")
        self.format = json.loads(fmt)

    def classes(self) -> list[str]:
        with self.env.begin() as txn:
            return [v.decode("utf-8") for _, v in txn.cursor(db=self._classes)]

    def ids(self, split: str) -> list[int]:
        """The sample ids of a split, in id order (the order label jobs cut into parts)."""
        code = {v: k for k, v in SPLITS.items()}.get(split)
        if code is None:
            raise StoreError(f"unknown split {split!r} (labeled, unlabeled, test or validation)")
        index = self.env.open_db(b"split_index", create=False)
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=index)
            if cur.set_range(bytes([code])):
                for key in cur.iternext(values=False):
                    if key[0] != code:
                        break
                    out.append(struct.unpack(">Q", key[1:9])[0])
        return out

    def get(self, ids) -> Iterator[dict]:
        """The samples with these ids, in the order given (record fields and `data`)."""
        with self.env.begin(buffers=False) as txn:
            for sample_id in ids:
                key = struct.pack(">Q", int(sample_id))
                value, data = txn.get(key, db=self._samples), txn.get(key, db=self._images)
                if value is None or data is None:
                    raise StoreError(f"{self.path}: sample {sample_id} is not in the store")
                rec = parse_record(int(sample_id), value)
                yield dict(rec, data=data)

    def samples(self, split: Optional[str] = None) -> Iterator[dict]:
        """Yields every sample in id order, with its stored bytes as `data`."""
        names = self.classes()
        with self.env.begin(buffers=False) as txn:
            images = txn.cursor(db=self._images)
            for key, value in txn.cursor(db=self._samples):
                (sample_id,) = struct.unpack(">Q", key)
                rec = parse_record(sample_id, value)
                if split is not None and rec["split"] != split:
                    continue
                data = images.get(key)
                if data is None:
                    raise StoreError(f"sample {sample_id}: image bytes missing")
                cls = rec["class_index"]
                yield {"id": sample_id, "split": rec["split"], "label": None if cls is None else names[cls],
                       "source": rec["source"], "format": rec["format"], "width": rec["width"],
                       "height": rec["height"], "data": data, "record": rec}

    def close(self) -> None:
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_store(path: str) -> Store:
    return Store(path)


if __name__ == "__main__":
    import sys
    with open_store(sys.argv[1]) as store:
        for s in store.samples():
            print(s["id"], s["split"], s["label"], s["source"], s["format"], s["width"], s["height"], len(s["data"]))
