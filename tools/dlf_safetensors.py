"""dlf_safetensors.py - read and write safetensors files with nothing but PyTorch.

For people without the `safetensors` package (pip install safetensors). Copy this file
next to your script, or copy the two functions you need:

    from dlf_safetensors import load, save
    tensors, metadata = load("dlf_cnn.safetensors")   # {name: tensor}, {str: str}
    save("torch_cnn.safetensors", model.state_dict(), {"epoch": "3"})

The format: 8 bytes little-endian header length N, N bytes of JSON
{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 "__metadata__": {str: str}}, then the data (offsets relative to its start).
Tensors are stored in the order given, the header padded with spaces to 8 bytes.
Assumes a little-endian machine (every x86 and ARM one). The reader trusts the file:
use the `safetensors` package or dlf's strict reader for files from strangers.
tools/gen_reference.py writes every fixture in tests/ref/ with save_bytes.
"""
import json
import os
import struct

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}
SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def load(path):
    """-> (dict name -> tensor in file order, dict metadata str -> str)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        begin, end = h["data_offsets"]
        chunk = bytearray(raw[8 + n + begin:8 + n + end])
        dtype = DTYPES[h["dtype"]]
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(h["shape"]).clone()
    return tensors, metadata


def save_bytes(tensors, metadata=None):
    """tensors: a dict (a state_dict) or a list of (name, tensor); metadata: dict or None. -> bytes."""
    header = {} if metadata is None else {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, t in (tensors.items() if hasattr(tensors, "items") else tensors):
        t = t.detach().cpu().contiguous()
        data = t.reshape(-1).view(SAME_SIZE_INT[t.element_size()]).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save(path, tensors, metadata=None):
    """Write save_bytes(...) to path (through path.tmp and a rename, so never half a file)."""
    with open(path + ".tmp", "wb") as f:
        f.write(save_bytes(tensors, metadata))
    os.replace(path + ".tmp", path)
