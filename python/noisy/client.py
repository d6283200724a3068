"""Client for `noisy serve` (schemas/wire-protocol.md). Needs only numpy.

    import noisy
    c = noisy.connect("unix:/tmp/noisy.sock", rank=0, world_size=2)
    for batch in c.batches():          # dicts of numpy arrays
        images, targets = batch["images"], batch["targets"]
        ...
        saved = c.state()              # resume later: connect(..., state=saved)

On a Unix socket, batches arrive through shared memory (`shared_memory=True`, the
default): the server renders into slots this process maps, and the arrays view them
without a copy. A batch stays valid until `hold` (default 2) newer batches have been
asked for; copy what you keep longer. Over TCP, batches travel through the socket.

    s = noisy.connect("127.0.0.1:5555").label_session("unlabeled", teacher="resnet50 gen 1")
    for ids, images in s:
        s.send(model(images))          # float32 [n, C] probabilities (logits=True for scores)
    generation = s.commit()
"""
import json
import mmap
import os
import socket
import struct

import numpy as np

VERSION = 1
MAGIC = b"NOIS"
ALIGN = 64


class ProtocolError(Exception):
    pass


def _open(address):
    if address.startswith("unix:") or address.startswith("/"):
        path = address[5:] if address.startswith("unix:") else address
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s
    host, _, port = address.rpartition(":")
    s = socket.create_connection((host or "127.0.0.1", int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ProtocolError("connection closed by the server")
        got += k
    return buf


def _send(sock, header, arrays=()):
    header = dict(header, version=VERSION)
    specs, offset, parts = [], 0, []
    for name, arr in arrays:
        arr = np.ascontiguousarray(arr)
        start = (offset + ALIGN - 1) // ALIGN * ALIGN
        if start > offset:
            parts.append(b"\0" * (start - offset))
        specs.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": start, "bytes": arr.nbytes})
        parts.append(memoryview(arr).cast("B"))
        offset = start + arr.nbytes
    if specs:
        header["arrays"] = specs
    js = json.dumps(header).encode()
    pad = (ALIGN - (16 + len(js)) % ALIGN) % ALIGN
    sock.sendall(MAGIC + struct.pack("<IQ", len(js), offset) + js + b"\0" * pad)
    for p in parts:
        sock.sendall(p)


def _receive(sock, shared=None):
    """One frame: (header, arrays). A frame with a `slot` has no payload: its arrays
    lie in that slot of `shared` (the mapped memory, slot_bytes) and are viewed in place."""
    prefix = _recv_exact(sock, 16)
    if bytes(prefix[:4]) != MAGIC:
        raise ProtocolError("not a noisy server (bad magic)")
    hlen, plen = struct.unpack("<IQ", prefix[4:])
    header = json.loads(bytes(_recv_exact(sock, hlen)))
    pad = (ALIGN - (16 + hlen) % ALIGN) % ALIGN
    if pad:
        _recv_exact(sock, pad)
    payload = _recv_exact(sock, plen) if plen else bytearray()
    if header.get("type") == "error":
        raise ProtocolError(header.get("message", "server error"))
    buffer, base = payload, 0
    if "slot" in header:
        if shared is None:
            raise ProtocolError("a shared-memory batch on a session without shared memory")
        buffer, base = shared[0], header["slot"] * shared[1]
    arrays = {}
    for a in header.get("arrays", []):
        arrays[a["name"]] = np.frombuffer(buffer, dtype=np.dtype(a["dtype"]), count=int(np.prod(a["shape"])) if a["shape"] else 1,
                                          offset=base + a["offset"]).reshape(a["shape"])
    return header, arrays


def _handshake(address, hello, **optional):
    """Connects, sends `hello` plus the optional fields that are set, and returns the
    socket and the server's welcome (checked for the protocol version)."""
    sock = _open(address)
    _send(sock, dict(hello, **{k: v for k, v in optional.items() if v is not None}))
    info, _ = _receive(sock)
    if info.get("version") != VERSION:
        sock.close()
        raise ProtocolError(f"server speaks protocol {info.get('version')}, this client {VERSION}")
    return sock, info


def _map_shared(sock, info):
    """Receives the session's memfd (SCM_RIGHTS) and maps it; the descriptor is closed
    at once, so the mapping is the only reference: when this process unmaps or dies,
    the kernel frees the memory."""
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise ProtocolError("the server announced shared memory but sent no descriptor")
    try:
        size = info["shared_memory"]["slots"] * info["shared_memory"]["slot_bytes"]
        return mmap.mmap(fds[0], size)
    finally:
        for fd in fds:
            os.close(fd)


class Client:
    """A train session; `label_session` opens a separate connection for labelling.

    shared_memory: ask for batches in shared memory (honoured on Unix sockets).
    hold: how many batches this client keeps valid at once (1 to 64); a batch's
    slot goes back to the server when the batch `hold` places later is asked for."""

    def __init__(self, address, rank=None, world_size=None, state=None, token=None, shared_memory=True, hold=2,
                 local_rank=None, local_world_size=None):
        self.address, self.token = address, token
        if rank is not None and world_size is None:
            world_size = 1
        self.sock, self.info = _handshake(address, {"type": "hello", "session": "train"},
                                          rank=rank, world_size=world_size, state=state, token=token,
                                          shared_memory=bool(shared_memory) or None, hold=hold,
                                          local_rank=local_rank, local_world_size=local_world_size)
        self._state = self.info["state"]
        self._shared = None
        if self.info.get("shared_memory"):
            self._shared = (_map_shared(self.sock, self.info), self.info["shared_memory"]["slot_bytes"])
        self._held = []  # slots of the batches handed out and not yet released, oldest first
        self._hold = hold

    @property
    def shared_memory(self):
        """True when batches arrive through shared memory."""
        return self._shared is not None

    def batches(self, count=None):
        """Yields batches: images, targets, weights, ids, source (0 labeled, 1 pseudo-labeled)."""
        n = 0
        while count is None or n < count:
            while len(self._held) >= self._hold:
                _send(self.sock, {"type": "release", "slot": self._held.pop(0)})
            header, arrays = _receive(self.sock, self._shared)
            if header.get("type") != "batch":
                raise ProtocolError(f"expected a batch, got {header.get('type')}")
            if "slot" in header:
                self._held.append(header["slot"])
            self._state = header["state"]
            arrays["index"] = header["index"]
            yield arrays
            n += 1

    def state(self):
        """The resume state after the last batch received (JSON-able dict)."""
        return self._state

    def close(self):
        """Ends the session. Arrays already received stay readable (they keep the
        mapping alive); the memory goes when the last of them does."""
        try:
            _send(self.sock, {"type": "stop"})
        except OSError:
            pass
        self.sock.close()
        self._shared = None

    def label_session(self, split="unlabeled", teacher="", logits=False, parent=None, precision="f16", model=None,
                      job=None, part=None, parts=None, local_rank=None, local_world_size=None):
        return LabelSession(self.address, split, teacher, logits, parent, precision, model, self.token, job, part, parts,
                            local_rank, local_world_size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _part_from_environment(part, parts):
    """A job's part: explicit arguments, else torchrun's RANK / WORLD_SIZE (or a Slurm
    array's SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT)."""
    if part is not None and parts is not None:
        return int(part), int(parts)
    for p, w in (("RANK", "WORLD_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")):
        if p in os.environ and w in os.environ:
            return int(os.environ[p]), int(os.environ[w])
    raise ProtocolError("a job's label session needs part and parts (or torchrun's RANK and WORLD_SIZE)")


class LabelSession:
    """Iterate for (ids, images); answer each batch with send(probs); then commit().

    With `job`, the session covers one part of a label job (part i of W: the samples
    at positions i, i+W, ... of the split in id order), taken from `part`/`parts` or
    torchrun's RANK/WORLD_SIZE; commit() submits the part, and the generation appears
    when the last part of the job is in (commit() then returns its number, else None;
    `receipt` holds the server's full answer). A node's server over part of a shard set
    labels part LOCAL_RANK of LOCAL_WORLD_SIZE on each of its shards instead (sent from
    `local_rank`/`local_world_size` or torchrun's environment)."""

    def __init__(self, address, split, teacher, logits, parent, precision, model, token, job=None, part=None, parts=None,
                 local_rank=None, local_world_size=None):
        hello = {"type": "hello", "session": "label", "split": split, "teacher": teacher, "logits": bool(logits),
                 "precision": precision}
        if job is not None:
            part, parts = _part_from_environment(part, parts)
            hello.update(job=job, part=part, parts=parts)
            # A node's server over part of a shard set labels the rank's place on the node.
            if local_rank is None and "LOCAL_RANK" in os.environ and "LOCAL_WORLD_SIZE" in os.environ:
                local_rank, local_world_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
            if local_rank is not None:
                hello.update(local_rank=int(local_rank), local_world_size=int(local_world_size))
        self.receipt = None
        self.targets = None   # the current batch's classes (int64, -1: none): score a model with them
        self.sock, self.info = _handshake(address, hello, parent=parent, model=model, token=token)
        self._index = None
        self._ended = False

    def __iter__(self):
        while True:
            header, arrays = _receive(self.sock)
            if header["type"] == "end":
                self._ended = True
                return
            if header["type"] != "label_batch":
                raise ProtocolError(f"expected a label batch, got {header['type']}")
            self._index = header["index"]
            self.targets = arrays.get("targets")
            yield arrays["ids"], arrays["images"]

    def send(self, probs):
        probs = np.ascontiguousarray(probs, dtype=np.float32)
        _send(self.sock, {"type": "predictions", "index": self._index}, [("probs", probs)])

    def commit(self):
        """Ends the session; the server creates the generation and returns its number."""
        if not self._ended:
            raise ProtocolError("commit() before every batch was answered")
        _send(self.sock, {"type": "commit"})
        header, _ = _receive(self.sock)
        self.sock.close()
        self.receipt = header
        return header["generation"]

    def abort(self):
        self.sock.close()


def connect(address, rank=None, world_size=None, state=None, token=None, shared_memory=True, hold=2,
            local_rank=None, local_world_size=None):
    """Opens a train session. address: "unix:/path", "/path" or "host:port". A server
    over part of a shard set (one per node) serves the node's local ranks: pass
    local_rank and local_world_size (torchrun's LOCAL_RANK, LOCAL_WORLD_SIZE)."""
    return Client(address, rank, world_size, state, token, shared_memory, hold, local_rank, local_world_size)
