#!/usr/bin/python3
"""llama.cpp's own quantizer (llama-quantize's library call) from node-llama-cpp's prebuilt binaries.

The npm package ships no llama-quantize executable, but its libllama exports llama_model_quantize, the
function llama-quantize calls: this script calls it through ctypes.

    python3 tests/llamacpp/llama_quantize.py IN.gguf OUT.gguf TYPE [--pure] [--threads N]

TYPE is a llama-quantize name (Q4_K_M, Q4_K_S, Q6_K, Q8_0, Q4_0, F16, BF16, F32) or a LLAMA_FTYPE number.
--pure is llama-quantize's --pure (every matrix in the base type: no mix, no Q6_K output). Exit status 0
on success; llama.cpp's log goes to stderr.

llama_model_quantize_params is used as llama_model_quantize_default_params() returns it, with only its
first two fields changed (int32 nthread at offset 0, llama_ftype ftype at offset 4, stable across
llama.cpp versions) and `pure`, the eighth field: bool at offset 19 after the two ggml_type fields
(offsets 8, 12) and the bools allow_requantize, quantize_output_tensor, only_copy (16-18).
"""
import ctypes
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15, "Q4_K": 15, "Q6_K": 18, "BF16": 32}


def bins_dir():
    dirs = sorted(glob.glob(os.path.join(HERE, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64")))
    if not dirs:
        raise SystemExit("llama_quantize: node-llama-cpp's linux-x64 binaries are not installed (cd tests/llamacpp && npm ci)")
    return dirs[0]


def load():
    d = bins_dir()
    lib = None
    for pattern in ["libggml-base.so", "libggml.*.so", "libllama.*.so"]:
        for path in sorted(glob.glob(os.path.join(d, pattern))):
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return lib


class Params(ctypes.Structure):
    # larger than the real struct (returned through a hidden pointer either way); only the leading fields are touched
    _fields_ = [("raw", ctypes.c_uint8 * 512)]


def quantize(src, dst, ftype, pure=False, threads=1):
    llama = load()
    llama.llama_model_quantize_default_params.restype = Params
    llama.llama_model_quantize.restype = ctypes.c_uint32
    llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    llama.llama_backend_init()
    p = llama.llama_model_quantize_default_params()
    head = (ctypes.c_int32 * 2).from_buffer(p.raw)
    head[0] = threads
    head[1] = ftype
    if pure:
        p.raw[19] = 1
    return llama.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))


def main(argv):
    args, pure, threads, i = [], False, 1, 0
    while i < len(argv):
        if argv[i] == "--pure":
            pure = True
        elif argv[i] == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
            i += 1
        else:
            args.append(argv[i])
        i += 1
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst, t = args
    ftype = int(t) if t.isdigit() else FTYPES.get(t.upper())
    if ftype is None:
        print("llama_quantize: unknown type %s" % t, file=sys.stderr)
        return 2
    rc = quantize(src, dst, ftype, pure, threads)
    if rc != 0:
        print("llama_quantize: llama_model_quantize failed (%d)" % rc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
