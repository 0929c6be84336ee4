#!/usr/bin/env python3
"""Bad input never crashes llamac.

Hundreds of hostile model files (GGUF and llama2.c), tokenizer files, prompts and option values are fed
to the CLI. For every run:
  * no signal (crash, abort, sanitizer report) and no hang (10 s timeout);
  * when the input must be rejected: exit code > 0 and stderr exactly ONE non-empty printable line;
  * when the input is odd but legal: either success or such a clean error;
  * memory: the address space is capped at 4 GiB (RLIMIT_AS), except under ASan, where the allocator
    refuses single allocations over 4 GiB instead (max_allocation_size_mb) and reports it as a crash.

Environment: LLAMAC (CLI path), LLAMAC_SHARED (test data), LLAMAC_TMP (scratch), LLAMAC_SANITIZE=1 (ASan
build; also detected from the binary). Files of failing cases are kept under $LLAMAC_TMP/bad_input for
reproduction; the others are deleted.

  python3 tests/test_bad_input.py [-k SUBSTRING] [-v] [--keep] [-j N]
"""
import argparse
import concurrent.futures as cf
import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMAC = os.path.abspath(os.environ.get("LLAMAC", os.path.join(ROOT, "build", "llamac")))
SHARED = os.path.abspath(os.environ.get("LLAMAC_SHARED", os.path.join(ROOT, "..", "shared")))
TMP = os.path.join(os.path.abspath(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")), "bad_input")
MODELS = os.path.join(SHARED, "models", "stories260K")
GGUF = os.path.join(MODELS, "stories260K.gguf")
BIN = os.path.join(MODELS, "stories260K.bin")
TOK = os.path.join(MODELS, "tok512.bin")
VOCAB_GGUF = os.path.join(SHARED, "testdata", "tokenizer", "ggml-vocab-llama-spm.gguf")
TIMEOUT = 10.0
AS_LIMIT = 4 << 30

# expectations
FAIL = "fail"    # exit > 0, one clean stderr line
ANY = "any"      # success, or a clean failure
OK = "ok"        # exit 0

# which commands must reject a file of each hostile level (see hostile.LEVELS)
LEVEL_EXPECT = {
    "container": {"info": FAIL, "generate": FAIL, "logits": FAIL, "tokenize": FAIL},
    "model": {"info": FAIL, "generate": FAIL, "logits": FAIL, "tokenize": ANY},
    "vocab": {"info": ANY, "generate": FAIL, "logits": FAIL, "tokenize": FAIL},
    "vocab_model": {"info": ANY, "generate": FAIL, "logits": FAIL, "tokenize": ANY},
    "ok": {"info": ANY, "generate": ANY, "logits": ANY, "tokenize": ANY},
    "valid": {"info": OK, "generate": OK, "logits": OK, "tokenize": OK},
}


def is_asan_build():
    if os.environ.get("LLAMAC_SANITIZE", "") not in ("", "0", "OFF", "off"):
        return True
    try:
        with open(LLAMAC, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = is_asan_build()


def child_env():
    env = dict(os.environ)
    if ASAN:
        # A multi-gigabyte allocation is a bug here: make ASan report it instead of trying.
        opts = "max_allocation_size_mb=4096:detect_leaks=0:abort_on_error=0:symbolize=1"
        env["ASAN_OPTIONS"] = opts + (":" + env["ASAN_OPTIONS"] if env.get("ASAN_OPTIONS") else "")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


ENV = child_env()


def limits():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not ASAN:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


class Result:
    def __init__(self, case, ok, why, cmd):
        self.case, self.ok, self.why, self.cmd = case, ok, why, cmd


def run_cli(args):
    """-> (returncode or None on timeout, stdout, stderr, seconds)"""
    t0 = time.monotonic()
    try:
        p = subprocess.run([LLAMAC] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT, preexec_fn=limits, env=ENV)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", e.stderr or b"", time.monotonic() - t0


def check_stderr(err):
    """'' if stderr is exactly one non-empty printable line, else why not."""
    text = err.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text:
        lines = text.split("\n")
        head = " | ".join(lines[:3])
        return f"stderr has {len(lines)} lines: {head[:300]}"
    if not text.strip():
        return "stderr is empty"
    bad = [c for c in text if ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F]
    if bad:
        return f"stderr line contains control characters {sorted(set(map(ord, bad)))}: {text[:200]!r}"
    return ""


def judge(expect, rc, out, err, want=None):
    """'' when the run meets the expectation, else the reason. want: a word a refusal's message must
    contain (the thing refused)."""
    if rc is None:
        return f"HANG: no exit within {TIMEOUT:.0f} s"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        tail = err.decode("utf-8", "replace").strip().splitlines()[:4]
        return f"CRASH: killed by {name}; stderr: {' | '.join(tail)[:400]}"
    if expect == OK:
        if rc != 0:
            return f"expected success, got exit {rc}: {err.decode('utf-8', 'replace').strip()[:300]}"
        return ""
    if rc == 0:
        if expect == FAIL:
            return "ACCEPTED: exit 0 on input that must be rejected"
        return ""
    why = check_stderr(err)
    if why:
        if b"Sanitizer" in err or b"runtime error:" in err:
            return "SANITIZER: " + why
        return "BAD MESSAGE: " + why
    # the paths of generated files (which carry the case's name) do not count as naming the thing
    if want and expect == FAIL and want.lower() not in re.sub(re.escape(TMP) + r"[^:\s]*", "", err.decode("utf-8", "replace")).lower():
        return f"BAD MESSAGE: does not name {want!r}: {err.decode('utf-8', 'replace').strip()[:300]}"
    return ""


class Runner:
    def __init__(self, args):
        self.args = args
        self.results = []
        self.lock = threading.Lock()
        self.jobs = []  # (case name, expect, argv, files to delete on success, word the error must name)

    def add(self, name, expect, argv, files=(), want=None):
        if self.args.k and not any(k in name for k in self.args.k):
            return
        self.jobs.append((name, expect, argv, tuple(files), want))

    def run(self):
        def one(job):
            name, expect, argv, files, want = job
            rc, out, err, dt = run_cli(argv)
            why = judge(expect, rc, out, err, want)
            r = Result(name, not why, why, argv)
            with self.lock:
                self.results.append(r)
                if self.args.v or why:
                    status = "ok  " if not why else "FAIL"
                    print(f"{status} {name} [{expect}] rc={rc} {dt*1000:.0f}ms"
                          + (f"\n     {why}\n     reproduce: {shlex.join([LLAMAC] + argv)}" if why else
                             f"  {err.decode('utf-8', 'replace').strip()[:160]}"), flush=True)
            return r

        with cf.ThreadPoolExecutor(max_workers=self.args.j) as ex:
            list(ex.map(one, self.jobs))
        failed = {r.case.split(" [")[0] for r in self.results if not r.ok}
        if not self.args.keep:
            # delete the files of cases with no failure; keep the reproducers
            keep = set()
            for name, expect, argv, files, _ in self.jobs:
                if name.split(" [")[0] in failed:
                    keep.update(files)
            for name, expect, argv, files, _ in self.jobs:
                for f in files:
                    if f not in keep and os.path.exists(f):
                        os.unlink(f)
        return self.results


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def gguf_commands(f):
    return {
        "info": ["info", f],
        "generate": ["generate", "-m", f, "-p", "Once", "-n", "4", "-s", "1"],
        "logits": ["logits", "-m", f, "-p", "hi", "--top", "3"],
        "tokenize": ["tokenize", "--tokenizer", f, "hi"],
    }


def add_gguf_cases(R):
    d = os.path.join(TMP, "gguf")
    for name, payload, level in hostile.gguf_cases(GGUF):
        if R.args.k and not any(k in "gguf/" + name for k in R.args.k):
            continue
        f = write(os.path.join(d, name + ".gguf"), hostile.as_bytes(payload))
        for cmd, argv in gguf_commands(f).items():
            R.add(f"gguf/{name} [{cmd}]", LEVEL_EXPECT[level][cmd], argv, [f])


def add_quantized_cases(R):
    d = os.path.join(TMP, "quant")
    for name, payload, level in hostile.quantized_cases(GGUF):
        if R.args.k and not any(k in "quant/" + name for k in R.args.k):
            continue
        f = write(os.path.join(d, name + ".gguf"), hostile.as_bytes(payload))
        for cmd, argv in gguf_commands(f).items():
            R.add(f"quant/{name} [{cmd}]", LEVEL_EXPECT[level][cmd], argv, [f])


def add_hf_json_cases(R):
    for name, files, level in hostile.hf_json_cases():
        if R.args.k and not any(k in "hfjson/" + name for k in R.args.k):
            continue
        d = os.path.join(TMP, "hfjson", name)
        paths = [write(os.path.join(d, fn), data) for fn, data in files.items()]
        f = os.path.join(d, "tokenizer.json")
        R.add(f"hfjson/{name} [tokenize]", LEVEL_EXPECT[level]["tokenize"], ["tokenize", "--tokenizer", f, "the hi 123 <|eot_id|>"], paths)
        R.add(f"hfjson/{name} [tokenize --special]", LEVEL_EXPECT[level]["tokenize"],
              ["tokenize", "--special", "--tokenizer", f, "<|begin_of_text|>the<|eot_id|>"], paths)
    # a tokenizer_config.json that is a FIFO or a directory beside a good tokenizer.json
    for kind in ("fifo", "dir"):
        d = os.path.join(TMP, "hfjson", "config_" + kind)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "tokenizer.json"), hostile.tiny_hf_json())
        c = os.path.join(d, "tokenizer_config.json")
        if not os.path.exists(c):
            os.mkfifo(c) if kind == "fifo" else os.makedirs(c)
        R.add(f"hfjson/config_{kind} [tokenize]", ANY, ["tokenize", "--tokenizer", os.path.join(d, "tokenizer.json"), "hi"])


def hf_config_cases(cfg):
    """(name, config.json bytes or None to omit it, expect) for a Hugging Face folder."""
    import json

    def m(**kw):
        c = dict(cfg)
        for k, v in kw.items():
            if v is DELETE:
                c.pop(k, None)
            else:
                c[k] = v
        return json.dumps(c).encode()
    out = [("control", m(), OK)]
    for k, vals in (("hidden_size", (0, -128, 127, 256, 1e12, "128", 1.5, None)),
                    ("num_attention_heads", (0, 3, -4, 1000000)),
                    ("num_key_value_heads", (0, 3, 8, -1)),
                    ("num_hidden_layers", (0, 3, 1000000, -1)),
                    ("vocab_size", (0, 31999, 32001, 2147483648)),
                    ("head_dim", (0, 31, 64, -32)),
                    ("intermediate_size", (0, 351, -1)),
                    ("rms_norm_eps", (0, -1, "x")),
                    ("rope_theta", (0, -1, 1e300)),
                    ("max_position_embeddings", (0, -1, 1 << 40)),
                    ("rope_scaling", ({"rope_type": "llama3", "factor": 0}, {"rope_type": "llama3", "factor": -8},
                                      {"rope_type": "llama3"}, {"rope_type": "yarn", "factor": 4}, "llama3", [1],
                                      {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1,
                                       "original_max_position_embeddings": 0})),
                    ("tie_word_embeddings", ("yes", True)),  # True: this folder's lm_head is not the embedding
                    ("hidden_act", ("gelu",)),
                    ("architectures", (["GPT2LMHeadModel"], "x", ["LlamaForCausalLM", "MistralForCausalLM"])),
                    ("model_type", ("gpt2", 7)),
                    ("bos_token_id", (-5, 1 << 40, 32000)),
                    ("eos_token_id", ([2, 99999], "x"))):
        for v in vals:
            label = "".join(c if c.isalnum() or c in "._-" else "_" for c in json.dumps(v)[:24])
            out.append((f"{k}_{label}", m(**{k: v}), FAIL))
    # no architecture list at all: model_type alone says Llama
    out.append(("architectures_empty", m(architectures=[]), OK))
    for k in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        out.append((f"missing_{k}", m(**{k: DELETE}), FAIL))
    out += [("not_json", b"{not json", FAIL), ("empty", b"", FAIL), ("array", b"[]", FAIL),
            ("truncated", m()[:40], FAIL), ("missing", None, FAIL), ("deep", b"[" * 100000, FAIL)]
    # exactly one JSON object: cJSON alone stopped at the first value or NUL and kept the first of two keys
    out += [("trailing_junk", m() + b" junk", FAIL), ("two_objects", m() + m(), FAIL), ("nul_after", m() + b"\0junk", FAIL),
            ("nul_inside", m()[:-1] + b', "x": "a\0b"}', FAIL), ("bom", b"\xef\xbb\xbf" + m(), FAIL),
            ("duplicate_key", m()[:-1] + b', "hidden_size": 64}', FAIL),
            ("nested_65", m()[:-1] + b', "x": ' + b"[" * 65 + b"]" * 65 + b"}", FAIL),
            ("nested_60", m()[:-1] + b', "x": ' + b"[" * 60 + b"]" * 60 + b"}", OK)]
    return out


DELETE = object()


def dup_tensor_safetensors(head):
    """The synthesized file's header with its first tensor's entry repeated at the end (same key)."""
    import json
    n = struct.unpack_from("<Q", head)[0]
    h = head[8:8 + n].rstrip(b" ")
    first = json.loads(h)
    name = next(k for k in first if k != "__metadata__")
    h = h[:-1] + b", " + json.dumps(name).encode() + b": " + json.dumps(first[name]).encode() + b"}"
    return struct.pack("<Q", len(h)) + h


def add_folder_cases(R):
    """Hugging Face and Meta model folders (written by `llamac synth`), with hostile config.json /
    params.json / index / weight files. Unchanged files are symlinks to the synthesized ones."""
    import json
    base = os.path.join(TMP, "folders")
    os.makedirs(base, exist_ok=True)
    src = {}
    # hf, meta: Llama 2 shapes (untied output); hf3, meta3: Llama 3.2 shapes (tied, llama3 rope scaling)
    for fmt, preset in (("hf", "tiny-llama2"), ("meta", "tiny-llama2"), ("hf3", "tiny"), ("meta3", "tiny")):
        d = os.path.join(base, "synth_" + fmt)
        if not os.path.isdir(d):
            p = subprocess.run([LLAMAC, "synth", "--preset", preset, "--format", fmt.rstrip("3"), "-o", d, "--seed", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(ENV, LLAMAC_SHARED=SHARED), timeout=120)
            if p.returncode != 0:
                print(f"bad_input: skipping {fmt} folder cases: synth failed: {p.stderr.decode(errors='replace').strip()[:200]}")
                continue
        src[fmt] = d

    def folder(name, fmt, replace):
        d = os.path.join(base, f"{fmt}_{name}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for fn in os.listdir(src[fmt]):
            if fn not in replace:
                os.symlink(os.path.join(src[fmt], fn), os.path.join(d, fn))
        for fn, data in replace.items():
            if data is None:
                continue
            if callable(data):
                data(os.path.join(d, fn))
            else:
                write(os.path.join(d, fn), data)
        return d

    def add(name, fmt, replace, expect, want=None):
        if R.args.k and not any(k in f"{fmt}/{name}" for k in R.args.k):
            return
        if fmt not in src:
            return
        d = folder(name, fmt, replace)
        written = [os.path.join(d, fn) for fn, data in replace.items()
                   if data is not None and os.path.isfile(os.path.join(d, fn)) and not os.path.islink(os.path.join(d, fn))]
        R.add(f"{fmt}/{name} [generate]", expect, ["generate", "-m", d, "-p", "Once", "-n", "2", "-s", "1"], written, want)
        R.add(f"{fmt}/{name} [info]", expect, ["info", d], written, want)

    add_unsupported_folder_cases(add, src)

    if "hf" in src:
        with open(os.path.join(src["hf"], "config.json")) as f:
            cfg = json.load(f)
        for name, data, expect in hf_config_cases(cfg):
            add(name, "hf", {"config.json": data}, expect)
        st = os.path.join(src["hf"], "model.safetensors")
        with open(st, "rb") as f:
            head = f.read(1 << 16)
        n = struct.unpack_from("<Q", head)[0]
        add("safetensors_truncated_header", "hf", {"model.safetensors": head[:8 + n // 2]}, FAIL)
        add("safetensors_header_only", "hf", {"model.safetensors": head[:8 + n]}, FAIL)
        add("safetensors_empty", "hf", {"model.safetensors": b""}, FAIL)
        add("safetensors_len_huge", "hf", {"model.safetensors": struct.pack("<Q", 1 << 62) + head[8:]}, FAIL)
        add("safetensors_missing", "hf", {"model.safetensors": None}, FAIL)
        add("safetensors_is_directory", "hf", {"model.safetensors": lambda p: os.makedirs(p)}, FAIL)
        add("safetensors_is_fifo", "hf", {"model.safetensors": lambda p: os.mkfifo(p)}, FAIL)
        for label, target in (("missing_shard", "model-00002-of-00002.safetensors"), ("abs_path", "/dev/zero"),
                              ("traversal", "../../../../../../etc/passwd"), ("dir", "."), ("empty", "")):
            idx = json.dumps({"metadata": {}, "weight_map": {"model.norm.weight": target,
                                                              "model.embed_tokens.weight": "model.safetensors"}}).encode()
            add(f"index_{label}", "hf", {"model.safetensors.index.json": idx, "model.safetensors": None}, FAIL)
        add("index_not_json", "hf", {"model.safetensors.index.json": b"{", "model.safetensors": None}, FAIL)
        add("generation_config_junk", "hf", {"generation_config.json": b'{"eos_token_id": 2} {"eos_token_id": 5}'}, FAIL)
        add("generation_config_duplicate", "hf", {"generation_config.json": b'{"eos_token_id": 2, "eos_token_id": 5}'}, FAIL)
        add("safetensors_duplicate_tensor", "hf", {"model.safetensors": dup_tensor_safetensors(head)}, FAIL)
        add("index_weight_map_not_object", "hf", {"model.safetensors.index.json": b'{"weight_map": [1]}', "model.safetensors": None}, FAIL)
    if "meta" in src:
        with open(os.path.join(src["meta"], "params.json")) as f:
            params = json.load(f)
        add("control", "meta", {}, OK)
        for k, vals in (("dim", (0, -128, 127, 1 << 40)), ("n_layers", (0, 3, 1000000)), ("n_heads", (0, 3, 1000000)),
                        ("n_kv_heads", (0, 3, 8)), ("vocab_size", (0, 31999, 1 << 31, -5)), ("multiple_of", (0, -32, 1 << 31)),
                        ("ffn_dim_multiplier", (0, -1.3, 1e30)), ("norm_eps", (0, -1)), ("rope_theta", (0, -5)),
                        ("max_seq_len", (0, -1)), ("use_scaled_rope", ("yes",)), ("rope_scaling_factor", (0, -8))):
            for v in vals:
                pj = dict(params, **{k: v})
                add(f"{k}_{v}", "meta", {"params.json": json.dumps(pj).encode()}, FAIL)
        add("params_not_json", "meta", {"params.json": b"{{"}, FAIL)
        pj = json.dumps(params).encode()
        add("params_trailing_junk", "meta", {"params.json": pj + b"x"}, FAIL)
        add("params_nul", "meta", {"params.json": pj + b"\0"}, FAIL)
        add("params_duplicate_key", "meta", {"params.json": pj[:-1] + b', "dim": 64}'}, FAIL)
        add("params_missing", "meta", {"params.json": None}, FAIL)
        pth = os.path.join(src["meta"], "consolidated.00.pth")
        with open(pth, "rb") as f:
            raw = f.read()
        add("pth_truncated_half", "meta", {"consolidated.00.pth": raw[:len(raw) // 2]}, FAIL)
        add("pth_truncated_tail", "meta", {"consolidated.00.pth": raw[:-10]}, FAIL)
        add("pth_empty", "meta", {"consolidated.00.pth": b""}, FAIL)
        add("pth_missing", "meta", {"consolidated.00.pth": None}, FAIL)
        add("pth_not_zip", "meta", {"consolidated.00.pth": b"\x80\x02}q\x00." + b"\0" * 100}, FAIL)
        # a pickle that asks for os.system: refused by name, nothing runs
        import io
        import zipfile
        zb = io.BytesIO()
        with zipfile.ZipFile(zb, "w", zipfile.ZIP_STORED) as z:
            z.writestr("consolidated/data.pkl", b"cos\nsystem\n(S'touch /tmp/llamac-pwned'\ntR.")
            z.writestr("consolidated/version", b"3\n")
        add("pth_pickle_os_system", "meta", {"consolidated.00.pth": zb.getvalue()}, FAIL)


def safetensors_with(path, extra):
    """The safetensors file at path with the F32 tensors extra ({name: shape}, zeros) appended."""
    import json
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw)[0]
    hdr = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    for name, shape in extra.items():
        nbytes = 4
        for d in shape:
            nbytes *= d
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += b"\0" * nbytes
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def pth_with(path, name, storage_key, numel, shape):
    """The torch.save archive at path with one more state-dict entry, a view of an existing float32
    storage (so no data is added)."""
    import io
    import zipfile
    zin = zipfile.ZipFile(path)
    pkl_name = next(n for n in zin.namelist() if n.endswith("/data.pkl"))
    pkl = zin.read(pkl_name)
    head = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    entry = hostile.torch_pickle([(name, "FloatStorage", storage_key, numel, 0, shape)])[len(head):-2]
    assert pkl.endswith(b"u.")
    zb = io.BytesIO()
    with zipfile.ZipFile(zb, "w", zipfile.ZIP_STORED) as z:
        for info in zin.infolist():
            z.writestr(info.filename, pkl[:-2] + entry + b"u." if info.filename == pkl_name else zin.read(info.filename))
    return zb.getvalue()


def add_unsupported_folder_cases(add, src):
    """Folders that say they are something llamac does not compute (experts, sliding windows, biases,
    other architectures, rope scaling kinds, quantization, Llama 4 / vision params), refused with an
    error naming it; and real Llama files with the same keys at their neutral values, which load."""
    import json

    def cfg_of(fmt):
        with open(os.path.join(src[fmt], "config.json")) as f:
            return json.load(f)

    def hf(name, fmt, expect, want=None, files=None, **kw):
        if fmt not in src:
            return
        c = cfg_of(fmt)
        for k, v in kw.items():
            if v is DELETE:
                c.pop(k, None)
            else:
                c[k] = v
        add("unsupported_" + name, fmt, dict({"config.json": json.dumps(c).encode()}, **(files or {})), expect, want)

    add("control", "hf3", {}, OK)
    add("control", "meta3", {}, OK)
    hf("mixtral", "hf3", FAIL, "MixtralForCausalLM", architectures=["MixtralForCausalLM"], num_local_experts=8, num_experts_per_tok=2)
    hf("model_type_mixtral", "hf3", FAIL, "mixtral", model_type="mixtral")
    hf("num_local_experts", "hf3", FAIL, "num_local_experts", num_local_experts=8)
    hf("num_experts_per_tok", "hf3", FAIL, "num_experts_per_tok", num_experts_per_tok=2)
    hf("num_experts", "hf3", FAIL, "num_experts", num_experts=4)
    hf("sliding_window", "hf3", FAIL, "sliding_window", sliding_window=4096)
    hf("partial_rotary_factor", "hf3", FAIL, "partial_rotary_factor", partial_rotary_factor=0.5)
    hf("quantization_config", "hf3", FAIL, "quantization_config", quantization_config={"quant_method": "gptq", "bits": 4})
    hf("mistral", "hf3", FAIL, "mistral", architectures=["MistralForCausalLM"], model_type="mistral")
    hf("sequence_classifier", "hf3", FAIL, "LlamaForSequenceClassification", architectures=["LlamaForSequenceClassification"])
    hf("attention_bias", "hf3", FAIL, "attention_bias", attention_bias=True)
    hf("mlp_bias", "hf3", FAIL, "mlp_bias", mlp_bias=True)
    hf("hidden_act_gelu", "hf3", FAIL, "hidden_act", hidden_act="gelu_pytorch_tanh")
    hf("head_dim_64", "hf3", FAIL, "head_dim", head_dim=64)
    for t in ("yarn", "linear", "dynamic", "longrope"):
        hf(f"rope_scaling_{t}", "hf3", FAIL, t, rope_scaling={"rope_type": t, "factor": 4.0, "original_max_position_embeddings": 8192})
    # neutral values, and the exact keys of Meta's Llama 3.1 8B and Llama 2 7B configs, load
    hf("neutral_values", "hf3", OK, sliding_window=None, num_local_experts=0, partial_rotary_factor=1.0, quantization_config=None)
    hf("qwen_style_window_off", "hf3", OK, sliding_window=4096, use_sliding_window=False)
    hf("llama31_rope_scaling", "hf3", OK, head_dim=DELETE, eos_token_id=[128001, 128008, 128009],
       rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"})
    hf("llama31_rope_scaling_old_key", "hf3", OK,
       rope_scaling={"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "type": "llama3"})
    hf("llama2_keys", "hf", OK, pad_token_id=0, pretraining_tp=1, rope_scaling=None, attention_bias=False,
       mlp_bias=DELETE, head_dim=DELETE)

    # weights beside the ones llamac computes with
    if "hf" in src:
        st = os.path.join(src["hf"], "model.safetensors")
        for name, extra, want in (("q_proj_bias", {"model.layers.0.self_attn.q_proj.bias": [128]}, "bias"),
                                  ("router", {"model.layers.1.block_sparse_moe.gate.weight": [8, 128]}, "block_sparse_moe"),
                                  ("layer_past_count", {"model.layers.2.input_layernorm.weight": [128]}, "model.layers.2"),
                                  ("vision_tower", {"vision_model.patch_embedding.weight": [128, 4]}, "vision_model")):
            add("unsupported_tensor_" + name, "hf", {"model.safetensors": lambda p, extra=extra: open(p, "wb").write(safetensors_with(st, extra))},
                FAIL, want)
        add("old_rotary_inv_freq", "hf", {"model.safetensors": lambda p: open(p, "wb").write(
            safetensors_with(st, {"model.layers.0.self_attn.rotary_emb.inv_freq": [16], "model.layers.1.self_attn.rotary_emb.inv_freq": [16]}))}, OK)
    if "hf3" in src:
        # a tied model whose file also holds a different lm_head: which one is the output?
        st = os.path.join(src["hf3"], "model.safetensors")
        add("unsupported_tied_with_other_lm_head", "hf3", {"model.safetensors": lambda p: open(p, "wb").write(
            safetensors_with(st, {"lm_head.weight": [128256, 128]}))}, FAIL, "tie_word_embeddings")

    # generation_config.json: transformers' ranges and types, and the file must be a file
    if "hf3" in src:
        with open(os.path.join(src["hf3"], "generation_config.json")) as f:
            gen = json.load(f)
        for k, v in (("top_k", -1), ("top_k", 1.5), ("top_k", "50"), ("repetition_penalty", -1), ("repetition_penalty", 0),
                     ("temperature", -0.5), ("temperature", "0.6"), ("top_p", 1.5), ("min_p", 2), ("typical_p", 0),
                     ("num_beams", 0), ("max_new_tokens", -5), ("max_length", 1e30), ("do_sample", "yes"),
                     ("eos_token_id", [128001, 999999])):
            label = "".join(c if c.isalnum() or c in "._-" else "_" for c in json.dumps(v)[:16])
            add(f"generation_{k}_{label}", "hf3", {"generation_config.json": json.dumps(dict(gen, **{k: v})).encode()}, FAIL, k)
        for label, text, want in (("nan", b'{"do_sample": true, "temperature": NaN}', "JSON"),
                                  ("inf", b'{"do_sample": true, "temperature": 1e999}', "temperature"),
                                  ("array", b"[]", "JSON"), ("empty", b"", None)):
            add(f"generation_{label}", "hf3", {"generation_config.json": text}, FAIL, want)
        add("tokenizer_json_is_directory", "hf3", {"tokenizer.json": lambda p: os.makedirs(p)}, FAIL, "directory")
        add("generation_is_directory", "hf3", {"generation_config.json": lambda p: os.makedirs(p)}, FAIL, "directory")
        add("generation_is_fifo", "hf3", {"generation_config.json": lambda p: os.mkfifo(p)}, FAIL, "regular file")
        add("generation_dangling_link", "hf3", {"generation_config.json": lambda p: os.symlink("/nonexistent/gen.json", p)}, FAIL,
            "no such file")
        add("generation_llama31", "hf3", {"generation_config.json": json.dumps(
            {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9,
             "transformers_version": "4.42.3"}).encode()}, OK)
        add("generation_all_fields_ok", "hf3", {"generation_config.json": json.dumps(
            dict(gen, top_k=50, repetition_penalty=1.1, min_p=0.05, typical_p=1.0, num_beams=1, max_length=4096, max_new_tokens=256,
                 pad_token_id=0, do_sample=False)).encode()}, OK)
    if "hf" in src:
        add("generation_llama2", "hf", {"generation_config.json": json.dumps(
            {"bos_token_id": 1, "do_sample": True, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0, "temperature": 0.6,
             "top_p": 0.9, "transformers_version": "4.31.0.dev0"}).encode()}, OK)

    # Meta params.json keys of later releases (Llama 4, vision, quantized) and extra tensors
    for fmt in ("meta", "meta3"):
        if fmt not in src:
            continue
        with open(os.path.join(src[fmt], "params.json")) as f:
            params = json.load(f)

        def meta(name, expect, want=None, **kw):
            add("unsupported_" + name, fmt, {"params.json": json.dumps(dict(params, **kw)).encode()}, expect, want)
        if fmt == "meta3":
            meta("moe_args", FAIL, "moe_args", moe_args={"num_experts": 16, "top_k": 1, "interleave_moe_layer_step": 1})
            meta("moe", FAIL, "moe", moe={"num_experts": 8})
            meta("use_qk_norm", FAIL, "use_qk_norm", use_qk_norm=True)
            meta("nope_layer_interval", FAIL, "nope_layer_interval", nope_layer_interval=4)
            meta("attention_chunk_size", FAIL, "attention_chunk_size", attention_chunk_size=8192)
            meta("vision_chunk_size", FAIL, "vision", vision_chunk_size=560, vision_max_num_chunks=4, vision_num_cross_attention_layers=8)
            meta("quantization_args", FAIL, "quantization_args", quantization_args={"group_size": 32, "scheme": "int4_weight_int8_dynamic_activation"})
            meta("lora_args", FAIL, "lora_args", lora_args={"rank": 16, "scale": 2.0})
            meta("neutral_values", OK, use_qk_norm=False, moe_args=None, quantization_args=None)
        pth = os.path.join(src[fmt], "consolidated.00.pth")
        for name, tname, want in (("wq_bias", "layers.0.attention.wq.bias", "bias"),
                                  ("experts", "layers.1.feed_forward.experts.w1", "experts"),
                                  ("layer_past_count", "layers.2.attention_norm.weight", "layers.2")):
            add("unsupported_tensor_" + name, fmt, {"consolidated.00.pth": pth_with(pth, tname, "1", 128, [128])}, FAIL, want)
        add("rope_freqs_llama2", fmt, {"consolidated.00.pth": pth_with(pth, "rope.freqs", "1", 128, [16])}, OK)


def add_unsupported_file_cases(R):
    """GGUF files that ask for what llamac does not compute (hostile.unsupported_gguf_cases), a llama2.c
    export of a newer version, and every synthetic preset (which must load)."""
    d = os.path.join(TMP, "unsupported")
    for name, payload, level, want in hostile.unsupported_gguf_cases(GGUF):
        if R.args.k and not any(k in "unsupported/" + name for k in R.args.k):
            continue
        f = write(os.path.join(d, name + ".gguf"), hostile.as_bytes(payload))
        for cmd, argv in gguf_commands(f).items():
            R.add(f"unsupported/{name} [{cmd}]", LEVEL_EXPECT[level][cmd], argv, [f], want)
    with open(BIN, "rb") as fb:
        raw = fb.read()
    # export.py --version 1: magic "ak42", version, then params of another layout
    f = write(os.path.join(d, "llama2c_export_v1.bin"), struct.pack("<Ii", 0x616B3432, 1) + raw[:28] + b"\0" * 256 + raw[28:])
    R.add("unsupported/llama2c_ak42_v1 [info]", FAIL, ["info", f], [f], "ak42")
    # (the hf and meta folders of tiny and tiny-llama2 are the controls of add_folder_cases)
    for preset, fmt, wtype in (("tiny", "gguf", "q8_0"), ("tiny-llama2", "gguf", "f16"), ("tiny-256", "gguf", "q4_k_m"),
                               ("tiny-256", "hf", "bf16"), ("tiny-256", "meta", "bf16")):
        if R.args.k and not any(k in f"synth/{preset}/{fmt}" for k in R.args.k):
            continue
        if ASAN and fmt != "gguf":
            continue  # valid files: loading a 128K-token tokenizer.json under ASan nears the hang timeout
        out = os.path.join(d, f"synth_{preset}_{wtype}.{fmt}")
        if not os.path.exists(out):
            p = subprocess.run([LLAMAC, "synth", "--preset", preset, "--format", fmt, "--type", wtype, "-o", out, "--seed", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(ENV, LLAMAC_SHARED=SHARED), timeout=120)
            if p.returncode != 0:
                R.add(f"synth/{preset}/{fmt} [synth]", OK, ["synth", "--preset", preset, "--format", fmt, "-o", out])
                continue
        R.add(f"synth/{preset}/{fmt} [info]", OK, ["info", out])
        R.add(f"synth/{preset}/{fmt} [generate]", OK, ["generate", "-m", out, "-p", "Once", "-n", "2", "-s", "1"])


def add_llama2c_cases(R):
    # each checkpoint in a folder with tokenizer.bin beside it, as run.c expects
    d = os.path.join(TMP, "llama2c")
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(TOK, os.path.join(d, "tokenizer.bin"))
    for name, payload, level in hostile.llama2c_cases(BIN):
        if R.args.k and not any(k in "llama2c/" + name for k in R.args.k):
            continue
        f = write(os.path.join(d, name + ".bin"), hostile.as_bytes(payload))
        exp = LEVEL_EXPECT[level]
        R.add(f"llama2c/{name} [info]", exp["info"], ["info", f], [f])
        R.add(f"llama2c/{name} [generate]", exp["generate"], ["generate", "-m", f, "--tokenizer", TOK, "-p", "Once", "-n", "4", "-s", "1"], [f])
        R.add(f"llama2c/{name} [logits]", exp["logits"], ["logits", "-m", f, "-p", "hi", "--top", "3"], [f])
    # tokenizer.bin variants: alone, and with the real checkpoint
    d = os.path.join(TMP, "tok")
    for name, payload, level in hostile.tok_cases(TOK):
        if R.args.k and not any(k in "tok/" + name for k in R.args.k):
            continue
        f = write(os.path.join(d, name + ".bin"), hostile.as_bytes(payload))
        exp = LEVEL_EXPECT[level]
        R.add(f"tok/{name} [tokenize]", exp["tokenize"], ["tokenize", "--tokenizer", f, "hi"], [f])
        R.add(f"tok/{name} [generate]", exp["generate"], ["generate", "-m", BIN, "--tokenizer", f, "-p", "Once", "-n", "4", "-s", "1"], [f])
        R.add(f"tok/{name} [gguf model]", ANY, ["generate", "-m", GGUF, "--tokenizer", f, "-p", "Once", "-n", "4", "-s", "1"], [f])


LONG_PROMPT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
               "One day, she saw a big red ball in the park. ") * 4


def add_cli_cases(R):
    d = os.path.join(TMP, "cli")
    os.makedirs(d, exist_ok=True)
    empty = write(os.path.join(d, "empty.gguf"), b"")
    text = write(os.path.join(d, "text.gguf"), b"this is not a model\n" * 10)
    lonely = os.path.join(d, "lonely")  # a .bin with no tokenizer.bin beside it
    os.makedirs(lonely, exist_ok=True)
    lonely_bin = os.path.join(lonely, "model.bin")
    if not os.path.exists(lonely_bin):
        shutil.copyfile(BIN, lonely_bin)
    fifo = os.path.join(d, "fifo.gguf")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    G = ["generate", "-m", GGUF, "-p", "Once", "-n", "4", "-s", "1"]

    def gen(*extra, model=GGUF, prompt="Once"):
        return ["generate", "-m", model, "-p", prompt, "-s", "1", "-n", "4"] + list(extra)

    cases = [
        ("control_generate", OK, G),
        ("control_generate_bin", OK, gen("--tokenizer", TOK, model=BIN)),
        ("control_tokenize_vocab_only_gguf", OK, ["tokenize", "--tokenizer", VOCAB_GGUF, "hi"]),
        ("missing_model", FAIL, gen(model="/nonexistent/dir/model.gguf")),
        ("missing_model_info", FAIL, ["info", "/nonexistent/model.gguf"]),
        ("missing_model_logits", FAIL, ["logits", "-m", "/nonexistent/model.gguf", "-p", "hi"]),
        ("directory_as_model", FAIL, gen(model=d)),
        ("directory_as_model_info", FAIL, ["info", d]),
        ("empty_file_as_model", FAIL, gen(model=empty)),
        ("empty_file_info", FAIL, ["info", empty]),
        ("empty_file_as_tokenizer", FAIL, ["tokenize", "--tokenizer", empty, "hi"]),
        ("empty_file_as_tokenizer_for_bin", FAIL, gen("--tokenizer", empty, model=BIN)),
        ("text_file_as_model", FAIL, gen(model=text)),
        ("text_file_as_tokenizer", FAIL, ["tokenize", "--tokenizer", text, "hi"]),
        ("dev_null_as_model", FAIL, gen(model="/dev/null")),
        ("dev_zero_as_model", FAIL, gen(model="/dev/zero")),
        ("dev_zero_as_tokenizer", FAIL, ["tokenize", "--tokenizer", "/dev/zero", "hi"]),
        ("dev_zero_as_prompt_file", ANY, ["generate", "-m", GGUF, "-f", "/dev/zero", "-n", "4"]),
        ("fifo_as_prompt_file", FAIL, ["generate", "-m", GGUF, "-f", fifo, "-n", "4"]),
        ("fifo_as_model", FAIL, gen(model=fifo)),
        ("fifo_as_tokenizer", FAIL, ["tokenize", "--tokenizer", fifo, "hi"]),
        ("tokenizer_bin_as_model", FAIL, gen(model=TOK)),
        ("vocab_only_gguf_as_model", FAIL, gen(model=VOCAB_GGUF)),
        ("vocab_only_gguf_info", FAIL, ["info", VOCAB_GGUF]),
        ("bin_without_tokenizer", FAIL, gen(model=lonely_bin)),
        ("bin_without_tokenizer_info", FAIL, ["info", lonely_bin]),
        ("tokenizer_missing", FAIL, gen("--tokenizer", "/nonexistent/tok.bin", model=BIN)),
        ("tokenizer_is_directory", FAIL, gen("--tokenizer", d, model=BIN)),
        ("tokenizer_is_model_bin", FAIL, gen("--tokenizer", BIN, model=BIN)),
        ("tokenizer_bigger_vocab_than_model", FAIL, gen("--tokenizer", VOCAB_GGUF, model=BIN)),
        ("tokenize_missing_tokenizer", FAIL, ["tokenize", "--tokenizer", "/nonexistent", "hi"]),
        ("prompt_file_missing", FAIL, ["generate", "-m", GGUF, "-f", "/nonexistent/prompt.txt"]),
        ("prompt_file_directory", FAIL, ["generate", "-m", GGUF, "-f", d]),
        ("empty_prompt", ANY, gen(prompt="")),
        ("empty_prompt_bin", ANY, gen("--tokenizer", TOK, model=BIN, prompt="")),
        ("empty_prompt_logits", ANY, ["logits", "-m", GGUF, "-p", ""]),
        ("empty_prompt_tokenize", ANY, ["tokenize", "--tokenizer", TOK, ""]),
        ("prompt_longer_than_ctx", FAIL, gen("--ctx", "16", prompt=LONG_PROMPT)),
        ("prompt_equal_ctx", ANY, gen("--ctx", "3", prompt="Once upon")),
        ("generate_past_ctx", ANY, ["generate", "-m", GGUF, "-p", "Once", "--ctx", "8", "-n", "100", "-s", "1"]),
        ("prompt_longer_than_train_ctx", ANY, gen(prompt=LONG_PROMPT * 16)),
        ("prompt_invalid_utf8", ANY, gen(prompt="\udcff\udcfe Once \udcc3(")),
        ("prompt_control_chars", ANY, gen(prompt="\x01\x02\x1b[2J\x7f")),
        ("prompt_special_text", ANY, gen("--special", prompt="<s></s><unk><s>")),
        ("logits_ids_out_of_range", FAIL, ["logits", "-m", GGUF, "--ids", "1,512"]),
        ("logits_ids_huge", FAIL, ["logits", "-m", GGUF, "--ids", "1,2147483647"]),
        ("logits_ids_negative", FAIL, ["logits", "-m", GGUF, "--ids", "1,-3"]),
        ("logits_ids_garbage", FAIL, ["logits", "-m", GGUF, "--ids", "1,,x"]),
        ("logits_ids_many", ANY, ["logits", "-m", GGUF, "--ids", ",".join(["1"] * 600)]),
        ("n_negative", FAIL, G + ["-n", "-5"]),
        ("n_non_numeric", FAIL, G + ["-n", "abc"]),
        ("n_trailing_garbage", FAIL, G + ["-n", "4x"]),
        ("n_overflow", FAIL, G + ["-n", "99999999999999999999"]),
        ("n_empty", FAIL, G + ["-n", ""]),
        ("n_zero", ANY, G + ["-n", "0"]),
        ("temp_non_numeric", FAIL, G + ["--temp", "abc"]),
        ("temp_negative", FAIL, G + ["--temp", "-1"]),
        ("temp_nan", FAIL, G + ["--temp", "nan"]),
        ("temp_inf", FAIL, G + ["--temp", "1e999"]),
        ("temp_huge_ok", ANY, G + ["--temp", "1000"]),
        ("temp_tiny", ANY, G + ["--temp", "1e-30"]),
        ("ctx_zero", ANY, G + ["--ctx", "0"]),
        ("ctx_negative", FAIL, G + ["--ctx", "-1"]),
        ("ctx_non_numeric", FAIL, G + ["--ctx", "abc"]),
        ("ctx_overflow", FAIL, G + ["--ctx", "99999999999"]),
        ("ctx_1M", ANY, G + ["--ctx", "1048576"]),
        ("ctx_huge_info", ANY, ["info", GGUF, "--ctx", "16777216"]),
        ("top_p_2", FAIL, G + ["--top-p", "2"]),
        ("top_p_negative", FAIL, G + ["--top-p", "-0.5"]),
        ("top_p_zero", ANY, G + ["--top-p", "0"]),
        ("top_k_negative", FAIL, G + ["--top-k", "-1"]),
        ("top_k_huge", ANY, G + ["--top-k", "16777216"]),
        ("min_p_2", FAIL, G + ["--min-p", "2"]),
        ("repeat_penalty_zero", ANY, G + ["--repeat-penalty", "0"]),
        ("repeat_penalty_tiny", ANY, G + ["--repeat-penalty", "1e-6", "--temp", "0"]),
        ("repeat_last_n_negative", FAIL, G + ["--repeat-last-n", "-1"]),
        ("repeat_last_n_huge", ANY, G + ["--repeat-last-n", "1048576"]),
        ("threads_negative", FAIL, G + ["--threads", "-1"]),
        ("threads_zero", ANY, G + ["--threads", "0"]),
        ("threads_huge", ANY, G + ["--threads", "100000"]),
        ("threads_1024", ANY, G + ["--threads", "1024"]),
        ("seed_non_numeric", FAIL, G + ["--seed", "x"]),
        ("seed_negative", ANY, G + ["--seed", "-1"]),
        ("seed_overflow", FAIL, G + ["--seed", "99999999999999999999999"]),
        ("option_missing_value_m", FAIL, ["generate", "-p", "Once", "-m"]),
        ("option_missing_value_p", FAIL, ["generate", "-m", GGUF, "-p"]),
        ("option_missing_value_n", FAIL, G + ["-n"]),
        ("generate_without_model", FAIL, ["generate", "-p", "Once"]),
        ("generate_without_prompt", FAIL, ["generate", "-m", GGUF]),
        ("unknown_option", FAIL, G + ["--bogus"]),
        ("unknown_option_info", FAIL, ["info", GGUF, "--bogus"]),
        ("unknown_option_tokenize", FAIL, ["tokenize", "--tokenizer", TOK, "--bogus", "hi"]),
        ("unknown_option_logits", FAIL, ["logits", "-m", GGUF, "-p", "hi", "--bogus"]),
        ("unknown_subcommand", FAIL, ["frobnicate", GGUF]),
        ("empty_subcommand", FAIL, [""]),
        ("info_two_models", FAIL, ["info", GGUF, GGUF]),
        ("tokenize_no_text", FAIL, ["tokenize", "--tokenizer", TOK]),
        ("tokenize_both_sources", ANY, ["tokenize", "--tokenizer", TOK, "-m", GGUF, "hi"]),
        ("tokenize_long_text", ANY, ["tokenize", "--tokenizer", TOK, "x" * 100000]),
        ("tokenize_many_spaces", ANY, ["tokenize", "--tokenizer", TOK, " " * 100000]),
        ("tokenize_spm_vocab_long_word", ANY, ["tokenize", "--tokenizer", VOCAB_GGUF, "a" * 50000]),
        ("model_path_empty", FAIL, gen(model="")),
        ("model_path_very_long", FAIL, gen(model="/" + "a" * 5000 + ".gguf")),
        ("model_path_long_existing_dir", FAIL, gen(model=d + "/" + "./" * 3000 + "missing.gguf")),
    ]
    # every sampler path on a model whose logits are all NaN
    nan_model = write(os.path.join(d, "nan_logits.gguf"), hostile.as_bytes(dict(
        (n, p) for n, p, _ in hostile.gguf_cases(GGUF))["weights_nan_output_norm"]))
    for opts in (["--temp", "0"], ["--temp", "0.8"], ["--top-k", "1"], ["--top-k", "0", "--top-p", "0.5"],
                 ["--min-p", "0.5"], ["--repeat-penalty", "1.3"], ["--top-k", "0", "--top-p", "1", "--min-p", "0"]):
        cases.append(("nan_logits_" + "_".join(o.strip("-") for o in opts), ANY, gen(*opts, model=nan_model)))
    for name, expect, argv in cases:
        R.add(f"cli/{name}", expect, argv)
    # a context the user asked for that needs ~20 GiB of KV cache: a clean error (or success), no crash
    # (not under ASan, whose allocator prints warnings for a failed allocation even when it returns NULL)
    if not ASAN:
        R.add("cli/ctx_huge_user_asked", ANY, G + ["--ctx", "16777216"])
    # no arguments at all: usage on stderr (several lines are fine here), non-zero exit
    R.add("cli/no_arguments", "usage", [])


def judge_usage(rc, err):
    if rc is None or rc <= 0:
        return "expected a non-zero exit with usage"
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", help="only cases whose name contains this (repeatable)")
    ap.add_argument("-v", action="store_true", help="print every case")
    ap.add_argument("--keep", action="store_true", help="keep every generated file")
    ap.add_argument("-j", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    if not os.access(LLAMAC, os.X_OK):
        print(f"bad_input: LLAMAC={LLAMAC} is not an executable", file=sys.stderr)
        return 1
    for p in (GGUF, BIN, TOK):
        if not os.path.exists(p):
            print(f"bad_input: missing test data {p}", file=sys.stderr)
            return 1
    os.makedirs(TMP, exist_ok=True)
    R = Runner(args)
    add_gguf_cases(R)
    add_quantized_cases(R)
    add_hf_json_cases(R)
    add_llama2c_cases(R)
    add_folder_cases(R)
    add_unsupported_file_cases(R)
    add_cli_cases(R)
    # the one job with its own judgement
    usage_jobs = [j for j in R.jobs if j[1] == "usage"]
    R.jobs = [j for j in R.jobs if j[1] != "usage"]
    print(f"bad_input: {len(R.jobs) + len(usage_jobs)} runs of {LLAMAC} ({'ASan build, no RLIMIT_AS' if ASAN else 'RLIMIT_AS 4 GiB'})",
          flush=True)
    t0 = time.monotonic()
    results = R.run()
    for name, _, argv, _, _ in usage_jobs:
        rc, out, err, _ = run_cli(argv)
        why = judge_usage(rc, err)
        results.append(Result(name, not why, why, argv))
        if why:
            print(f"FAIL {name}: {why}\n     reproduce: {shlex.join([LLAMAC] + argv)}")
    n_fail = sum(not r.ok for r in results)
    n_pass = len(results) - n_fail
    by_kind = {}
    for r in results:
        if not r.ok:
            kind = r.why.split(":")[0]
            by_kind[kind] = by_kind.get(kind, 0) + 1
    if by_kind:
        print("failures by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
        print(f"reproducer files kept under {TMP}")
    print(f"({time.monotonic() - t0:.1f} s)")
    print(f"bad_input: {n_pass} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
