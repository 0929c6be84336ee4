#!/usr/bin/python3
"""llamac convert: every tensor of the output equals the input re-encoded as asked, checked with the
independent numpy GGUF reader (tests/ref/gguf_reader.py), and the converted model's logits agree with
the float64 reference on the ORIGINAL file.

  * stories260K.bin (llama2.c) -> GGUF: logits within 1e-5 of the reference forward pass run on
    stories260K.gguf (llama.cpp's own conversion of the same weights), tokenizer carried over.
  * tiny f32 GGUF -> q8_0 / q4_0 / bf16: each matrix equals numpy's quantization of the f32 matrix
    (llama.cpp's reference quantizers re-implemented here), norms and rope_freqs unchanged.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from gguf_reader import GGUFFile  # noqa: E402
from llama_ref import LlamaRef  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")
os.makedirs(TMP, exist_ok=True)
failures = []


def run(*args):
    p = subprocess.run([LLAMAC, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit("FAIL: llamac %s: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def q8_0(rows):
    """llama.cpp quantize_row_q8_0_ref, dequantized: d = amax/127 stored as f16, q = round(x/d)."""
    b = rows.reshape(-1, 32).astype(np.float32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    x = b * inv[:, None]
    q = np.where(x >= 0, np.floor(x + np.float32(0.5)), np.ceil(x - np.float32(0.5)))  # roundf: ties away
    return (q * f16(d).astype(np.float32)[:, None]).reshape(rows.shape)


def q4_0(rows):
    """quantize_row_q4_0_ref: d = (signed max) / -8, q = min(15, (int)(x/d + 8.5))."""
    b = rows.reshape(-1, 32).astype(np.float32)
    idx = np.abs(b).argmax(axis=1)
    mx = b[np.arange(len(b)), idx]
    d = (mx / np.float32(-8)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, np.trunc(b * inv[:, None] + np.float32(8.5))).astype(np.float32)
    return ((q - 8) * f16(d).astype(np.float32)[:, None]).reshape(rows.shape)


def bf16(rows):
    u = rows.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def main():
    # llama2.c -> GGUF, checked against the reference run on llama.cpp's conversion
    stories = os.path.join(SHARED, "models", "stories260K")
    out = os.path.join(TMP, "stories-converted.gguf")
    run("convert", os.path.join(stories, "stories260K.bin"), out, "--tokenizer", os.path.join(stories, "tok512.bin"))
    ids = [1, 403, 407, 261, 263, 29, 100, 471]
    got = np.array(json.loads(run("logits", "-m", out, "--ids", ",".join(map(str, ids))))["logits"])
    ref = np.asarray(LlamaRef(os.path.join(stories, "stories260K.gguf")).forward(ids))
    err = np.abs(got - ref).max() / np.abs(ref).max()
    check(err < 1e-5, "stories260K.bin -> gguf: logits vs float64 reference on stories260K.gguf, rel err %.2e" % err)
    check(run("tokenize", "-m", out, "Once upon a time").split() == run("tokenize", "-m", os.path.join(stories, "stories260K.gguf"), "Once upon a time").split(),
          "converted file carries the tokenizer")

    # Hugging Face and Meta folders -> GGUF: the same tensors as synth's own GGUF of the same seed
    # (q/k rows of the HF folder put back in GGUF's order), compared with the numpy reader
    ref_gguf = os.path.join(TMP, "convert-ref-bf16.gguf")
    run("synth", "--preset", "tiny", "--type", "bf16", "--seed", "5", "-o", ref_gguf)
    g_ref = GGUFFile(ref_gguf)
    for fmt in ("hf", "meta"):
        folder = os.path.join(TMP, "convert-%s" % fmt)
        run("synth", "--preset", "tiny", "--type", "bf16", "--seed", "5", "--format", fmt, "-o", folder)
        out = os.path.join(TMP, "convert-from-%s.gguf" % fmt)
        run("convert", folder, out)
        g = GGUFFile(out)
        worst, missing = 0.0, [n for n in g_ref.tensors if n not in g.tensors]
        for name in g_ref.tensors:
            if name in g.tensors:
                worst = max(worst, float(np.abs(g.tensor(name) - g_ref.tensor(name)).max()))
        check(not missing and worst == 0.0, "%s folder -> gguf: every tensor equals the GGUF of the same weights (missing %s, max diff %.3g)"
              % (fmt, missing, worst))
        a = json.loads(run("logits", "-m", out, "--ids", "128000,791,4062,14198"))["logits"]
        b = json.loads(run("logits", "-m", ref_gguf, "--ids", "128000,791,4062,14198"))["logits"]
        check(a == b, "%s folder -> gguf: identical logits" % fmt)
        # Meta's folders carry no chat template (Meta's code formats chats itself): none is invented
        want = g_ref.metadata.get("tokenizer.chat_template") if fmt == "hf" else None
        check(g.metadata.get("tokenizer.chat_template") == want, "%s folder -> gguf: chat template carried over (%s)"
              % (fmt, "present" if want else "none in the source"))

    # re-encoding
    src = os.path.join(TMP, "convert-src-f32.gguf")
    run("synth", "--preset", "tiny", "--type", "f32", "--seed", "11", "-o", src)
    g0 = GGUFFile(src)
    for tname, fn in (("q8_0", q8_0), ("q4_0", q4_0), ("bf16", bf16)):
        dst = os.path.join(TMP, "convert-%s.gguf" % tname)
        run("convert", src, dst, "--type", tname)
        g1 = GGUFFile(dst)
        worst = 0.0
        names = sorted(g0.tensors)
        check(sorted(g1.tensors) == names, "%s: same tensor names" % tname)
        for name in names:
            a = g0.tensor(name)
            b = g1.tensor(name)
            want = a if a.ndim == 1 else fn(a.astype(np.float32))
            worst = max(worst, float(np.abs(b - want).max()))
        check(worst == 0.0, "%s: every tensor equals numpy's re-encoding (max diff %.3g)" % (tname, worst))


main()
print("convert: %d failed" % len(failures))
sys.exit(1 if failures else 0)
