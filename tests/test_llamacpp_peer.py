#!/usr/bin/python3
"""llama.cpp itself as the peer: llamac's files, tokens and logits against llama.cpp's.

llama.cpp runs from the prebuilt binaries of the npm package node-llama-cpp (tests/llamacpp/, installed
with `cd tests/llamacpp && npm ci`), driven by tests/llamacpp/run.mjs in one `batch` process.

  * harness sanity: llama.cpp loads stories260K.gguf and its greedy continuation of every golden prompt
    reproduces ../shared/testdata/golden/stories260K-greedy.jsonl (what llama2.c's run.c printed);
  * llamac-written files load in llama.cpp: `llamac synth --preset tiny --type T` for T in f32, f16, bf16,
    q8_0, q4_0; `llamac convert` of the llama2.c checkpoint stories260K.bin (+ tok512.bin) as it is and
    re-encoded to f16/bf16, and of the synthetic f32 file re-encoded to q8_0/q4_0 (when that is byte for
    byte the file synth writes for the type, that is checked instead of running llama.cpp on it again);
    the Hugging Face and Meta folders of `synth`, converted back to GGUF (llama.cpp must give the same
    logits as from the GGUF synth writes from the same seed), and the Llama 2 preset, when llamac can
    write them (skipped while it says "not supported yet");
  * tokenization: llama.cpp's llama_tokenize(add_special) vs `llamac tokenize --json` on varied strings, for
    the Llama 3 vocabulary of the synthetic file, the SentencePiece vocabulary of stories260K (and of its
    llamac conversion from tok512.bin) and the Llama 2 vocabulary of testdata/tokenizer/ggml-vocab-llama-spm.gguf;
  * logits: the last position's n_vocab logits of `llamac logits --ids` vs llama.cpp's (KV cache f32 on
    both sides) on BOS alone and on a longer prompt (38 Llama 3 tokens, 23-31 SentencePiece ones), max|diff| / max|ref| under the type's bound below,
    and the same argmax unless llama.cpp's own top two are closer than that bound (a near tie);
  * greedy: `llamac generate --temp 0 -n 16 --json` vs llama.cpp's 16 greedy tokens from the same prompt ids.

Bounds (max|llamac - llama.cpp| / max|llama.cpp|), with what was measured when they were set:
  f32             1e-4  same arithmetic up to summation order (measured 2e-7 to 5e-7);
  bf16, q8_0,     1e-4  both round the activations the same way before the dot products (bf16; Q8_0
  q4_0                  blocks, d = amax/127 stored as fp16) (measured 1e-9 to 1.4e-7), except where a value
                        lies within float32 noise of a rounding midpoint: the two f32 computations may then
                        round it differently, and one such flip moves the logits by 0.1-1% (seen: a bf16 file
                        at 10+ tokens, 1.9e-7 from the midpoint; a q4_0 file at 12+ tokens, 1e-7 from it). So
                        above the bound the float64 reference (tests/ref, emulate mode) must explain both
                        sides: llama.cpp's logits within 1e-5 of the emulation with at most 2 float32-level
                        ties taken the other way, and llamac's within 1e-5 of it with at most 2 (as
                        tests/test_forward_reference.py); the ties are printed;
  f16             3e-3  llama.cpp rounds the activations to f16 before its f16 dot products (ggml's
                        vec_dot_type for F16), llamac keeps them f32: a relative error up to 2^-11 per
                        input, ~6x that bound on the output (measured 2e-4 to 6e-4).

Skips (exit 0) only if tests/llamacpp/node_modules is missing and LLAMAC_REQUIRE_PEER is unset.
"""

import concurrent.futures
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_DIR = os.path.join(ROOT, "tests", "llamacpp")
LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(ROOT, "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260K")
GOLDEN = os.path.join(SHARED, "testdata", "golden", "stories260K-greedy.jsonl")
SPM_VOCAB = os.path.join(SHARED, "testdata", "tokenizer", "ggml-vocab-llama-spm.gguf")

TOL = {"f32": 1e-4, "bf16": 1e-4, "q8_0": 1e-4, "q4_0": 1e-4, "f16": 3e-3}
TIGHT_BOUND = 1e-5   # as tests/test_forward_reference.py: same rounding decisions, only f32 arithmetic differs
AMB_TOL = 1e-5       # a rounding input this close (relative to rms+|x|) to a midpoint is a tie

PROMPT_L3 = ("The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting all 217 steps, "
             "and lit the lamp so that ships far out at sea could find their way home.")
# greedy on the random synthetic models: each token tends to predict itself (tied embeddings), so a prompt
# whose greedy path switches tokens a few times
GREEDY_L3 = "The quick brown fox"
PROMPT_SPM = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park"

STRINGS = [
    "", " ", "  ", "   ", "\n", "\n\n\n", "\t", " \t\n ",
    "Hello world", " Hello world", "Hello World!", "hello\nworld", "HELLO", "hELLo wORLD",
    "I'm don't you'll we've they're it's", "I'M DON'T",
    "1234567890", "3.14159 2,500,000 1e-10 0x1F", "a1b2c3 42nd",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ", "multiple   spaces    here",
    "Ünïcödé àccents: café naïve résumé", "Ελληνικά και русский текст", "日本語のテキストです。", "中文测试，标点。",
    "한국어 문장", "مرحبا بالعالم", "हिन्दी", "🦙🔥 emoji 👍🏽 👨‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n", "if (a && b) { return c->d[0]; }",
    "<s> </s> <unk> <|begin_of_text|> <|eot_id|>", "a\u00a0b\u200bc", "line\r\nwindows\r\n",
    "Once upon a time, there was a little girl named Lily.",
    "Lily's mom said, \"Lily, let's go to the park.\"",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "!!!???...,,,;;;:::", "((([[[{{{}}}]]])))", "__init__ self.__dict__",
    " ".join(["word%d" % i for i in range(60)]),
]
# with --special: special-token text becomes the special tokens
STRINGS_SPECIAL_L3 = ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
                      "<|start_header_id|>assistant<|end_header_id|>\n\n"]
STRINGS_SPECIAL_SPM = ["<s>Hello</s>", " <s> text </s>"]

passed = 0
failed = 0
skipped = 0


def ok(msg):
    global passed
    passed += 1
    print("ok: " + msg, flush=True)


def fail(msg):
    global failed
    failed += 1
    print("FAIL: " + msg, flush=True)


def skip(msg):
    global skipped
    skipped += 1
    print("skip: " + msg, flush=True)


def summary_and_exit():
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""), flush=True)
    sys.exit(1 if failed else 0)


def run(args, timeout=120):
    p = subprocess.run(args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", errors="replace"), p.stderr.decode("utf-8", errors="replace")


def llamac(*args, timeout=120):
    """llamac's JSON answer, or raises with its error line."""
    rc, out, err = run([LLAMAC] + list(args), timeout)
    if rc != 0:
        raise RuntimeError("llamac %s: exit %d: %s" % (" ".join(args[:1]), rc, err.strip()[-400:]))
    return json.loads(out)


def rel_diff(ours, ref):
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def explain_by_ties(emu, ids, got, max_ties=2):
    """Smallest residual max|got - emulation with ties flipped| / max|.| over <= max_ties float32-level
    ties, and the ties used. Candidates: the attention outputs' ties first (llama.cpp's attention, with
    its own exp and summation order, is where its f32 values stray most from the float64 ones), then
    the rest, nearest to a midpoint first; single ties, then pairs among the first 8."""
    ze, amb = emu.ambiguous_roundings(ids, amb_tol=AMB_TOL)
    best = (rel_diff(got, ze), [])
    if best[0] < TIGHT_BOUND:
        return best
    order = sorted(amb, key=lambda a: (a[0][1] != "attn_out", a[4]))
    trials = [[a] for a in order[:96]]
    if max_ties >= 2:
        near = order[:8]
        trials += [[near[i], near[j]] for i in range(len(near)) for j in range(i + 1, len(near))]
    for ties in trials:
        r = rel_diff(got, emu.forward_flipped(ids, ties))
        if r < best[0]:
            best = (r, ties)
        if r < TIGHT_BOUND:
            break
    return best


def tie_str(ties):
    return ", ".join("layer %s %s, token %d, element %d (%.1e from the midpoint)" % (
        a[0][0], a[0][1], a[1], int(list(a[2])[0]), a[4]) for a in ties) or "none"


_emulators = {}


def emulator(path):
    if path not in _emulators:
        sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
        from llama_ref import LlamaRef  # noqa: E402 - only needed when a bound is exceeded
        _emulators[path] = LlamaRef(path, "emulate")
    return _emulators[path]


def compare_logits(what, ours, ref, tol, path=None, ids=None, rounding=False):
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return fail("%s: llamac has %d logits, llama.cpp %d" % (what, a.size, b.size))
    if not np.all(np.isfinite(a)):
        return fail("%s: llamac's logits are not all finite" % what)
    scale = max(float(np.max(np.abs(b))), 1e-30)
    d = np.abs(a - b)
    rel = float(np.max(d)) / scale
    ia, ib = int(np.argmax(a)), int(np.argmax(b))
    gap = float(b[ib] - b[ia]) / scale  # how much better llama.cpp's own pick is than llamac's, in its logits
    detail = "max|diff|/max|ref| = %.3g (bound %g), worst id %d: llamac %.7g, llama.cpp %.7g; argmax %d vs %d" % (
        rel, tol, int(np.argmax(d)), a[np.argmax(d)], b[np.argmax(d)], ia, ib)
    if rel >= tol and rounding:
        # both sides round activations (bf16 / Q8_0): is the difference one of float32-level ties?
        emu = emulator(path)
        r_cpp, t_cpp = explain_by_ties(emu, ids, b)
        r_ours, t_ours = explain_by_ties(emu, ids, a)
        expl = "llama.cpp vs the emulated float64 reference %.2g with tie(s) flipped: %s; llamac %.2g with: %s" % (
            r_cpp, tie_str(t_cpp), r_ours, tie_str(t_ours))
        if r_cpp < TIGHT_BOUND and r_ours < TIGHT_BOUND:
            return ok("%s: %s; explained by float32-level rounding ties (bound %g): %s" % (what, detail, TIGHT_BOUND, expl))
        return fail("%s: %s; not explained by <= 2 rounding ties: %s" % (what, detail, expl))
    if rel >= tol:
        return fail("%s: %s" % (what, detail))
    if ia != ib and gap > tol:
        return fail("%s: argmax differs beyond a near tie: %s" % (what, detail))
    ok("%s: %s%s" % (what, detail, " (near tie)" if ia != ib else ""))


def main():
    t0 = time.time()
    require = os.environ.get("LLAMAC_REQUIRE_PEER", "") not in ("", "0")
    if not os.path.isdir(os.path.join(PEER_DIR, "node_modules")):
        if not require:
            print("SKIP: llama.cpp peer not installed (tests/llamacpp/node_modules is missing; install it with "
                  "`cd tests/llamacpp && npm ci --no-audit --no-fund`, or set LLAMAC_REQUIRE_PEER=1 to make this "
                  "a failure)", flush=True)
            print("0 passed, 0 failed, 1 skipped")
            sys.exit(0)
        fail("LLAMAC_REQUIRE_PEER is set but tests/llamacpp/node_modules is missing "
             "(cd tests/llamacpp && npm ci --no-audit --no-fund)")
        summary_and_exit()
    node = shutil.which("node")
    if not node:
        fail("node is not on PATH (Node.js 20 runs the llama.cpp peer)")
        summary_and_exit()
    if not os.path.isfile(LLAMAC):
        fail("llamac CLI not found at %s (set LLAMAC)" % LLAMAC)
        summary_and_exit()

    tmp_base = os.environ.get("LLAMAC_TMP") or tempfile.mkdtemp(prefix="llamac-peer-")
    tmp = os.path.join(tmp_base, "llamacpp-peer")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    env_shared = dict(os.environ, LLAMAC_SHARED=SHARED)

    # ---- files written by llamac -------------------------------------------------------------------
    # (name, path, weight type, vocabulary kind, "same weights as" path or None)
    files = []
    for t in ["f32", "f16", "bf16", "q8_0", "q4_0"]:
        f = os.path.join(tmp, "tiny-%s.gguf" % t)
        p = subprocess.run([LLAMAC, "synth", "--preset", "tiny", "--type", t, "-o", f], capture_output=True,
                           env=env_shared, timeout=120)
        if p.returncode != 0:
            fail("llamac synth --preset tiny --type %s: %s" % (t, p.stderr.decode(errors="replace").strip()))
            continue
        files.append(("synth tiny %s" % t, f, t, "l3", None))
    stories_gguf = os.path.join(STORIES, "stories260K.gguf")
    for t in [None, "f16", "bf16"]:
        f = os.path.join(tmp, "stories-conv%s.gguf" % ("-" + t if t else ""))
        args = [LLAMAC, "convert", os.path.join(STORIES, "stories260K.bin"), f,
                "--tokenizer", os.path.join(STORIES, "tok512.bin")] + (["--type", t] if t else [])
        p = subprocess.run(args, capture_output=True, timeout=120)
        if p.returncode != 0:
            fail("llamac convert stories260K.bin%s: %s" % (" --type " + t if t else "", p.stderr.decode(errors="replace").strip()))
            continue
        files.append(("convert stories260K.bin%s" % (" --type " + t if t else ""), f, t or "f32", "spm",
                      stories_gguf if t is None else None))
    tiny_f32 = os.path.join(tmp, "tiny-f32.gguf")
    if os.path.exists(tiny_f32):
        for t in ["q8_0", "q4_0"]:
            f = os.path.join(tmp, "tiny-f32-conv-%s.gguf" % t)
            p = subprocess.run([LLAMAC, "convert", tiny_f32, f, "--type", t], capture_output=True, timeout=120)
            if p.returncode != 0:
                fail("llamac convert tiny-f32.gguf --type %s: %s" % (t, p.stderr.decode(errors="replace").strip()))
                continue
            direct = os.path.join(tmp, "tiny-%s.gguf" % t)
            if os.path.exists(direct) and filecmp.cmp(f, direct, shallow=False):
                # the same bytes as synth --type T writes: llama.cpp's checks of that file cover it
                ok("convert tiny-f32.gguf --type %s writes the very file synth --type %s does" % (t, t))
                continue
            files.append(("convert synth tiny f32 --type %s" % t, f, t, "l3", None))
    # writers that may not exist yet: the Hugging Face and Meta folders (converted back to GGUF, they must
    # give llama.cpp the same logits as the GGUF synth writes from the same seed) and the Llama 2 preset
    for fmt in ["hf", "meta"]:
        d = os.path.join(tmp, "tiny-%s" % fmt)
        p = subprocess.run([LLAMAC, "synth", "--preset", "tiny", "--format", fmt, "--type", "bf16", "-o", d],
                           capture_output=True, env=env_shared, timeout=120)
        err = p.stderr.decode(errors="replace").strip()
        if p.returncode != 0 and "not supported yet" in err:
            skip("synth --format %s: %s" % (fmt, err))
            continue
        if p.returncode != 0:
            fail("llamac synth --format %s: %s" % (fmt, err))
            continue
        f = os.path.join(tmp, "tiny-%s-conv.gguf" % fmt)
        p = subprocess.run([LLAMAC, "convert", d, f], capture_output=True, timeout=120)
        if p.returncode != 0:
            fail("llamac convert %s folder: %s" % (fmt, p.stderr.decode(errors="replace").strip()))
            continue
        files.append(("synth --format %s | convert" % fmt, f, "bf16", "l3", os.path.join(tmp, "tiny-bf16.gguf")))
    f = os.path.join(tmp, "tiny-llama2-q8_0.gguf")
    p = subprocess.run([LLAMAC, "synth", "--preset", "tiny-llama2", "--type", "q8_0", "-o", f], capture_output=True,
                       env=env_shared, timeout=120)
    err = p.stderr.decode(errors="replace").strip()
    if p.returncode != 0 and "not supported yet" in err:
        skip("synth --preset tiny-llama2: %s" % err)
    elif p.returncode != 0:
        fail("llamac synth --preset tiny-llama2: %s" % err)
    else:
        files.append(("synth tiny-llama2 q8_0", f, "q8_0", "spm", None))

    # ---- everything llama.cpp is asked, in one batch ---------------------------------------------------
    reqs = []

    def ask(req):
        reqs.append(req)
        return len(reqs) - 1

    golden = [json.loads(line) for line in open(GOLDEN, encoding="utf-8") if line.strip()]
    golden_req = []
    for g in golden:
        # steps counts the prompt's tokens (not BOS) and the continuation: ask for enough, compare a prefix
        golden_req.append(ask({"cmd": "greedy", "model": stories_gguf, "prompt": g["prompt"], "n": g["steps"]}))

    model_req = []
    for name, path, wtype, kind, same_as in files:
        prompt = PROMPT_L3 if kind == "l3" else PROMPT_SPM
        # the one-token prompt is BOS alone (Llama 3: 128000, SentencePiece: 1)
        r = {"one": ask({"cmd": "logits", "model": path, "ids": [128000 if kind == "l3" else 1]}),
             "long": ask({"cmd": "logits", "model": path, "prompt": prompt}),
             "greedy": ask({"cmd": "greedy", "model": path, "prompt": GREEDY_L3 if kind == "l3" else prompt, "n": 16})}
        if same_as:
            r["same"] = ask({"cmd": "logits", "model": same_as, "prompt": prompt})
        model_req.append(r)

    # (after the models' requests: a model already loaded serves its tokenizer)
    vocabs = [("Llama 3 (synth tiny)", os.path.join(tmp, "tiny-q4_0.gguf"), STRINGS_SPECIAL_L3),
              ("SentencePiece stories260K", stories_gguf, STRINGS_SPECIAL_SPM),
              ("SentencePiece stories260K via convert tok512.bin", os.path.join(tmp, "stories-conv.gguf"), STRINGS_SPECIAL_SPM),
              ("Llama 2 SentencePiece (ggml-vocab-llama-spm)", SPM_VOCAB, STRINGS_SPECIAL_SPM)]
    vocabs = [v for v in vocabs if os.path.exists(v[1])]
    if any(f[0] == "synth tiny-llama2 q8_0" for f in files):
        vocabs.append(("Llama 2 SentencePiece (synth tiny-llama2)", os.path.join(tmp, "tiny-llama2-q8_0.gguf"), STRINGS_SPECIAL_SPM))
    tok_req = []
    for name, path, special in vocabs:
        tok_req.append((ask({"cmd": "tokenize", "model": path, "texts": STRINGS}),
                        ask({"cmd": "tokenize", "model": path, "texts": special, "special": True})))

    batch_file = os.path.join(tmp, "requests.jsonl")
    with open(batch_file, "w", encoding="utf-8") as fp:
        for r in reqs:
            fp.write(json.dumps(r) + "\n")
    peer = subprocess.Popen([node, os.path.join(PEER_DIR, "run.mjs"), "batch", batch_file],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # ---- llamac's side, meanwhile --------------------------------------------------------------------
    # the strings go through files: exact bytes, and no text taken for an option
    strings_dir = os.path.join(tmp, "strings")
    os.makedirs(strings_dir)
    string_files = {}
    for s in STRINGS + STRINGS_SPECIAL_L3 + STRINGS_SPECIAL_SPM:
        if s not in string_files:
            string_files[s] = os.path.join(strings_dir, "%d.txt" % len(string_files))
            with open(string_files[s], "wb") as fp:
                fp.write(s.encode("utf-8"))

    def llamac_tok(path, text, special):
        args = ["tokenize", "-m", path, "--json"] + (["--special"] if special else []) + ["--file", string_files[text]]
        try:
            return llamac(*args)
        except Exception as e:  # noqa: BLE001 - reported per string
            return {"error": str(e)}

    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as ex:
        for vi, (name, path, special) in enumerate(vocabs):
            for si, s in enumerate(STRINGS):
                jobs[("tok", vi, si, False)] = ex.submit(llamac_tok, path, s, False)
            for si, s in enumerate(special):
                jobs[("tok", vi, si, True)] = ex.submit(llamac_tok, path, s, True)
        for fi, (name, path, wtype, kind, same_as) in enumerate(files):
            prompt = PROMPT_L3 if kind == "l3" else PROMPT_SPM
            bos = 128000 if kind == "l3" else 1
            jobs[("one", fi)] = ex.submit(lambda p=path, b=bos: llamac("logits", "-m", p, "--threads", "1", "--ids", str(b)))
            jobs[("long", fi)] = ex.submit(lambda p=path, q=prompt: llamac("logits", "-m", p, "--threads", "1", "-p", q))
            jobs[("greedy", fi)] = ex.submit(lambda p=path, q=(GREEDY_L3 if kind == "l3" else prompt): llamac(
                "generate", "-m", p, "-p", q, "-n", "16", "--temp", "0", "--threads", "1", "--json"))
        ours = {}
        for k, fut in jobs.items():
            try:
                ours[k] = fut.result()
            except Exception as e:  # noqa: BLE001
                ours[k] = {"error": str(e)}

    try:
        out, err = peer.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        peer.kill()
        fail("llama.cpp peer timed out")
        summary_and_exit()
    if peer.returncode != 0:
        fail("llama.cpp peer (run.mjs batch) exited %d: %s" % (peer.returncode, err.decode(errors="replace")[-1000:]))
        summary_and_exit()
    answers = [json.loads(line) for line in out.decode("utf-8").splitlines() if line.strip()]
    if len(answers) != len(reqs):
        fail("llama.cpp peer answered %d of %d requests" % (len(answers), len(reqs)))
        summary_and_exit()

    # ---- harness sanity: golden greedy from stories260K.gguf -----------------------------------------
    for g, ri in zip(golden, golden_req):
        a = answers[ri]
        if "error" in a:
            fail("llama.cpp golden %r: %s" % (g["prompt"], a["error"]))
            continue
        text = g["prompt"] + a["continuation"]
        want = g["text"][:-1] if g["text"].endswith("\n") else g["text"]
        if text.startswith(want):
            ok("llama.cpp reproduces the golden continuation of %r (%d tokens)" % (g["prompt"], len(a["ids"])))
        else:
            i = 0
            while i < min(len(text), len(want)) and text[i] == want[i]:
                i += 1
            fail("llama.cpp golden %r: first difference at char %d: got %r, want %r (harness broken?)" % (
                g["prompt"], i, text[max(0, i - 30):i + 30], want[max(0, i - 30):i + 30]))

    # ---- tokenization ---------------------------------------------------------------------------------
    for vi, ((name, path, special), (ri_plain, ri_special)) in enumerate(zip(vocabs, tok_req)):
        for ri, strings, is_special in [(ri_plain, STRINGS, False), (ri_special, special, True)]:
            a = answers[ri]
            if "error" in a:
                fail("llama.cpp tokenize (%s): %s" % (name, a["error"]))
                continue
            bad = []
            for si, s in enumerate(strings):
                mine = ours[("tok", vi, si, is_special)]
                if isinstance(mine, dict):
                    bad.append("%r: llamac error %s" % (s, mine["error"]))
                elif mine != a["ids"][si]:
                    bad.append("%r: llamac %s, llama.cpp %s" % (s, mine, a["ids"][si]))
            what = "tokenize%s, %s, %d strings with BOS" % (" --special" if is_special else "", name, len(strings))
            if bad:
                fail("%s: %d differ: %s" % (what, len(bad), "; ".join(bad[:5])))
            else:
                ok(what)
    # the llamac conversion of tok512.bin tokenizes in llama.cpp as llama.cpp's own stories260K.gguf does
    names = [v[0] for v in vocabs]
    if "SentencePiece stories260K" in names and "SentencePiece stories260K via convert tok512.bin" in names:
        i, j = names.index("SentencePiece stories260K"), names.index("SentencePiece stories260K via convert tok512.bin")
        for k in (0, 1):
            a, b = answers[tok_req[i][k]], answers[tok_req[j][k]]
            if "error" in a or "error" in b:
                continue
            what = "llama.cpp tokenizes%s with the converted tok512.bin vocabulary as with stories260K.gguf's" % (
                " --special" if k else "")
            if a["ids"] == b["ids"] and a["add_bos"] == b["add_bos"] and a["add_eos"] == b["add_eos"]:
                ok(what)
            else:
                diff = [(s, x, y) for s, x, y in zip(STRINGS if k == 0 else STRINGS_SPECIAL_SPM, a["ids"], b["ids"]) if x != y]
                fail("%s: %d differ, e.g. %r: %s vs %s (add_bos %s/%s)" % (what, len(diff), *(diff[0] if diff else ("", "", "")),
                                                                          a["add_bos"], b["add_bos"]))

    # ---- per model file: loads, logits, greedy --------------------------------------------------------
    for fi, ((name, path, wtype, kind, same_as), r) in enumerate(zip(files, model_req)):
        tol = TOL[wtype]
        one, long_, greedy = answers[r["one"]], answers[r["long"]], answers[r["greedy"]]
        if "error" in one or "error" in long_:
            fail("llama.cpp cannot use the llamac-written %s: %s" % (name, (one.get("error") or long_.get("error"))))
            continue
        ok("llama.cpp loads the llamac-written %s (%s)" % (name, os.path.basename(path)))
        for key, ref in [("one", one), ("long", long_)]:
            mine = ours[(key, fi)]
            what = "logits, %s, %d-token prompt" % (name, len(ref["prompt_ids"]))
            if "error" in mine:
                fail("%s: %s" % (what, mine["error"]))
                continue
            if mine["prompt_ids"] != ref["prompt_ids"]:
                fail("%s: prompt ids differ: llamac %s, llama.cpp %s" % (what, mine["prompt_ids"], ref["prompt_ids"]))
                continue
            compare_logits(what, mine["logits"], ref["logits"], tol, path, ref["prompt_ids"],
                           rounding=wtype in ("bf16", "q8_0", "q4_0"))
        if same_as:
            same = answers[r["same"]]
            what = "llama.cpp's logits from %s equal its logits from %s" % (name, os.path.basename(same_as))
            if "error" in same:
                fail("%s: %s" % (what, same["error"]))
            else:
                rel = rel_diff(long_["logits"], same["logits"])
                (ok if rel <= 1e-6 else fail)("%s: max|diff|/max|ref| = %.3g (bound 1e-6)" % (what, rel))
        # greedy
        mine = ours[("greedy", fi)]
        what = "greedy 16 tokens, %s" % name
        if "error" in greedy or "error" in mine:
            fail("%s: %s" % (what, greedy.get("error") or mine.get("error")))
            continue
        if mine["prompt_ids"] != greedy["prompt_ids"]:
            fail("%s: prompt ids differ: llamac %s, llama.cpp %s" % (what, mine["prompt_ids"], greedy["prompt_ids"]))
            continue
        ref_ids, my_ids = greedy["ids"], mine["ids"]
        k = next((i for i in range(min(len(ref_ids), len(my_ids))) if ref_ids[i] != my_ids[i]), None)
        if k is None and (len(my_ids) == len(ref_ids) or mine.get("finish_reason") != "length"):
            ok("%s: %s" % (what, my_ids))
            continue
        if k is None:
            fail("%s: llamac gave %d tokens, llama.cpp %d" % (what, len(my_ids), len(ref_ids)))
            continue
        # a divergence: is it a near tie in llama.cpp's own logits at that step?
        rc, o, e = run([node, os.path.join(PEER_DIR, "run.mjs"), "logits", path, "--ids",
                        ",".join(map(str, greedy["prompt_ids"] + ref_ids[:k]))], timeout=120)
        note = ""
        if rc == 0:
            lg = np.asarray(json.loads(o)["logits"], dtype=np.float64)
            gap = (lg[ref_ids[k]] - lg[my_ids[k]]) / np.max(np.abs(lg))
            note = "; llama.cpp's logit gap between the two picks: %.3g of max|logit|" % gap
            if gap <= tol:
                ok("%s: near tie at step %d (%s)%s" % (what, k, "llamac %d, llama.cpp %d" % (my_ids[k], ref_ids[k]), note))
                continue
        fail("%s: differ at step %d: llamac %s, llama.cpp %s%s; reproduce: %s logits -m %s --ids %s" % (
            what, k, my_ids, ref_ids, note, LLAMAC, path, ",".join(map(str, greedy["prompt_ids"] + ref_ids[:k]))))

    print("(%.1f s)" % (time.time() - t0))
    summary_and_exit()


if __name__ == "__main__":
    main()
