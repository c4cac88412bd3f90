#!/usr/bin/env python3
"""Writes tests/corpus/: small corrupted safetensors and IDX files, each paired in
tests/corpus/EXPECT with the words its error message must contain. Standard library
only; the output is the same on every run. Run from the repository root:
    python3 tools/make_corpus.py
"""
import json
import os
import struct

OUT = os.path.join("tests", "corpus")
cases = []  # (file name, kind, expected substring, bytes)


def st_bytes(header, data=b"", pad=True, hlen=None):
    """A safetensors file from a header (dict or raw str) and a data buffer."""
    h = header if isinstance(header, (str, bytes)) else json.dumps(header, separators=(",", ":"))
    if isinstance(h, str):
        h = h.encode()
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    n = len(h) if hlen is None else hlen
    return struct.pack("<Q", n) + h + data


def st(name, expect, header, data=b"", **kw):
    cases.append((name + ".safetensors", "st", expect, st_bytes(header, data, **kw)))


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


good_header = {
    "__metadata__": {"epoch": "1"},
    "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    "b": {"dtype": "F32", "shape": [3], "data_offsets": [24, 36]},
}
good_data = f32(1, 2, 3, 4, 5, 6) + f32(7, 8, 9)
good = st_bytes(good_header, good_data)
cases.append(("good.safetensors", "st", "OK", good))

# truncated at several points
for cut in (0, 5, 8, 20, len(good) - 36, len(good) - 1):
    expect = "too short" if cut < 8 else ("runs past the end" if cut < len(good) - 36 else "outside")
    cases.append(("trunc_%d.safetensors" % cut, "st", expect, good[:cut]))

# header length: huge, negative-looking, zero
st("hlen_huge", "over the", good_header, good_data, hlen=1 << 40)
st("hlen_negative", "over the", good_header, good_data, hlen=(1 << 64) - 1)
st("hlen_zero", "cannot hold", good_header, good_data, hlen=0)

# broken JSON and wrong types
st("json_unterminated", "unterminated string", '{"w":{"dtype":"F32', b"")
st("json_broken", "expected", '{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]', good_data[:24])
st("json_not_object", "must be a JSON object", "[1, 2]")
st("json_trailing", "bytes after the JSON object", '{} x')
st("json_shape_string", "expected '[' for shape", {"w": {"dtype": "F32", "shape": "2x3", "data_offsets": [0, 24]}}, good_data[:24])
st("json_dtype_number", "expected a string", {"w": {"dtype": 5, "shape": [6], "data_offsets": [0, 24]}}, good_data[:24])
st("json_negative_dim", "non-negative integer", '{"w":{"dtype":"F32","shape":[-6],"data_offsets":[0,24]}}', good_data[:24])
st("json_float_offset", "fraction", '{"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24.0]}}', good_data[:24])
st("json_offsets_three", "exactly two", '{"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24,48]}}', good_data[:24])
st("json_missing_offsets", "lacks dtype, shape or data_offsets", {"w": {"dtype": "F32", "shape": [6]}}, good_data[:24])
st("json_extra_key", "unexpected or repeated key", {"w": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24], "x": 1}}, good_data[:24])
st("json_meta_number", "must be strings", {"__metadata__": {"epoch": 1}})
st("json_bad_escape", "unknown escape", '{"w\\q":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', good_data[:24])
st("json_control_char", "control character", '{"w\x01":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', good_data[:24])
st("json_huge_int", "integer too large", '{"w":{"dtype":"F32","shape":[6],"data_offsets":[0,99999999999999999999999]}}', good_data[:24])

# offsets: overlap, gap, out of range, reversed, trailing bytes
st("offsets_overlap", "overlap", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(1, 2, 3))
st("offsets_gap", "gap", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}, f32(1, 2, 3, 4, 5))
st("offsets_out_of_range", "outside", {"a": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}}, f32(1, 2))
st("offsets_reversed", "outside", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, f32(1, 2))
st("offsets_trailing", "trailing bytes", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32(1, 2, 3))

# dtype and shape
st("dtype_unknown", "unknown dtype", {"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, f32(1, 2))
st("shape_mismatch", "needs 24 bytes", {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, f32(1, 2, 3, 4, 5))
st("shape_too_many_dims", "more than 4 dims", {"a": {"dtype": "F32", "shape": [1, 1, 1, 1, 1], "data_offsets": [0, 4]}}, f32(1))
st("shape_overflow", "more than 2^31-1 elements",
   {"a": {"dtype": "F32", "shape": [2147483647, 2147483647, 2147483647, 2147483647], "data_offsets": [0, 4]}}, f32(1))
st("dtype_f16_wrong_size", "needs 4 bytes", {"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}, f32(1, 2))

# duplicates
st("dup_tensor", "duplicate tensor name",
   '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1, 2))
st("dup_field", "unexpected or repeated key",
   '{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1))
st("dup_meta_key", "duplicate key in __metadata__", '{"__metadata__":{"k":"1","k":"2"}}')
st("dup_meta_object", "__metadata__ appears twice", '{"__metadata__":{},"__metadata__":{}}')

# IDX: a valid 3-image file and variations
def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


img = idx(0x803, [3, 4, 5], bytes(range(60)))
cases.append(("good-images-idx3-ubyte", "idx", "OK", img))
cases.append(("good-labels-idx1-ubyte", "idx", "OK", idx(0x801, [3], b"\x01\x02\x03")))
cases.append(("idx_empty", "idx", "too short for the 4-byte IDX magic", b""))
cases.append(("idx_trunc_magic", "idx", "too short for the 4-byte IDX magic", img[:3]))
cases.append(("idx_trunc_dims", "idx", "header of a 3-dim IDX file needs 16", img[:9]))
cases.append(("idx_trunc_payload", "idx", "truncated", img[:-1]))
cases.append(("idx_trailing", "idx", "trailing bytes", img + b"\x00"))
cases.append(("idx_bad_magic", "idx", "bad magic 0x12340803", b"\x12\x34" + img[2:]))
cases.append(("idx_float_type", "idx", "bad magic 0x00000d03", idx(0xD03, [3, 4, 5], bytes(60))))
cases.append(("idx_dims_mismatch", "idx", "does not match the dims", idx(0x803, [3, 4, 6], bytes(60))))
cases.append(("idx_zero_items", "idx", "0 items", idx(0x803, [0, 28, 28], b"")))
cases.append(("idx_huge_dims", "idx", "absurd dims", idx(0x803, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], bytes(16))))
cases.append(("idx_labels_4dims", "idx", "bad magic 0x00000804", idx(0x804, [1, 1, 1, 1], b"\x00")))

os.makedirs(OUT, exist_ok=True)
expect_path = os.path.join(OUT, "EXPECT")
with open(expect_path, "w") as ex:
    ex.write("# file<TAB>kind (st|idx)<TAB>text the error message must contain (OK: must load)\n")
    for name, kind, expect, data in cases:
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        ex.write("%s\t%s\t%s\n" % (name, kind, expect))
print("wrote %d files to %s" % (len(cases), OUT))
