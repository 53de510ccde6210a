#!/usr/bin/env python3
"""Writes small, valid GGUF files into seeds/ to start the gguf_parse fuzzer from.

Run from anywhere: python3 crates/model/fuzz/make_seeds.py. The files are checked in; rerun
only to change them.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds")

# GGUF metadata value type ids.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor type id -> (elements per block, bytes per block)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34), 12: (256, 144),
         24: (1, 1), 28: (1, 8), 30: (1, 2)}


def s(text):
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def value(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        elem_t, items = v
        return struct.pack("<IQ", elem_t, len(items)) + b"".join(value(elem_t, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(version, kvs, tensors, alignment=32, fill=0x11):
    """kvs: [(key, type, value)]; tensors: [(name, shape, ggml_type)] laid out back to back."""
    infos, offset, sizes = b"", 0, []
    for name, shape, ty in tensors:
        blk, blk_bytes = TYPES[ty]
        n = 1
        for d in shape:
            n *= d
        size = n // blk * blk_bytes
        infos += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", ty, offset)
        sizes.append(size)
        offset = (offset + size + alignment - 1) // alignment * alignment
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    out += b"".join(s(k) + struct.pack("<I", t) + value(t, v) for k, t, v in kvs)
    out += infos
    out += b"\0" * (-len(out) % alignment)
    for i, size in enumerate(sizes):
        out += bytes((fill + i + j) & 0xFF for j in range(size))
        out += b"\0" * (-len(out) % alignment)
    return out


SEEDS = {
    "empty_v3.gguf": gguf(3, [], []),
    "empty_v2.gguf": gguf(2, [], []),
    "all_value_types.gguf": gguf(3, [
        ("u8", U8, 200), ("i8", I8, -5), ("u16", U16, 60000), ("i16", I16, -300),
        ("u32", U32, 4_000_000_000), ("i32", I32, -70000), ("f32", F32, 1.5),
        ("bool", BOOL, True), ("str", STR, "hé"), ("u64", U64, 1 << 40),
        ("i64", I64, -(1 << 40)), ("f64", F64, -2.25),
        ("arr", ARR, (U32, [1, 2, 3])),
        ("strs", ARR, (STR, ["a", "bc", ""])),
        ("nested", ARR, (ARR, [(I8, [1, -1]), (I8, [])])),
    ], []),
    "small_model.gguf": gguf(3, [
        ("general.architecture", STR, "llama"), ("llama.block_count", U32, 1),
        ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "</s>", "a"])),
        ("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 1])),
    ], [("a", [4, 2], 0), ("b", [32], 8)]),
    "aligned64_mixed.gguf": gguf(2, [("general.alignment", U32, 64)], [
        ("f16", [3], 1), ("q4_0", [32, 2], 2), ("q4_1", [64], 3), ("q4_k", [256], 12),
        ("i8", [5, 1, 1, 2], 24), ("f64", [1], 28), ("bf16", [2, 2], 30),
    ], alignment=64),
    "aligned1.gguf": gguf(3, [("general.alignment", U64, 1)], [("x", [3], 24), ("y", [1, 1, 1], 0)],
                          alignment=1),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")
