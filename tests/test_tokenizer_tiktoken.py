#!/usr/bin/python3
"""Llama 3 tokenization against npm tiktoken (the WASM build of OpenAI's Rust core), run offline from
tests/node with Meta's tokenizer.model ranks and the Llama 3 pattern and special tokens.

1. Character classes: llamac's tables against tiktoken's regex engine, every code point (tiktoken
   knows Unicode 16.0; so must we).
2. A varied corpus (many scripts, source code, long whitespace and newline runs, digits, emoji with
   ZWJ sequences, control characters, apostrophes, special-token text, real files from this machine):
   llamac's ids from tokenizer.model (tiktoken's merge rule) and from tokenizer.json (merges list)
   against tiktoken's encode_ordinary, and with parse_special against encode(text, "all").
3. The 256 special tokens: Meta's Llama 3.1 list, id for id; the same ids are the added tokens of the
   shared (Llama 3.0) tokenizer.json, with the same names where both versions name them alike.
4. llama.cpp's Llama 3 vectors through tokenizer.model.
5. Ill-formed UTF-8 (tiktoken takes only strings): llamac keeps every byte; the ids decode, with the
   bytes tokenizer.model assigns them, to the input exactly. (How such bytes split is checked against
   python3-regex and tiktoken's algorithm in tests/test_pretokenize.py.)

Our side: the test_tokenizer_bpe program's --tokenize dump mode (the public llamac_tokenize).
Set LLAMAC_TEST_SEED to vary the corpus.
"""
import base64
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SHARED = os.environ.get("LLAMAC_SHARED", "../shared")
BUILD = os.path.dirname(os.environ["LLAMAC"]) if os.environ.get("LLAMAC") else "build"
PROG = os.path.join(BUILD, "test_tokenizer_bpe")
TMP = os.environ.get("LLAMAC_TMP", tempfile.gettempdir())
NODE_DIR = os.path.join("tests", "node")
REF = os.path.join(NODE_DIR, "tiktoken_ref.cjs")
RANKS = os.path.join(SHARED, "models", "llama3-tokenizer", "tokenizer.model")
JSON30 = os.path.join(SHARED, "models", "llama3-tokenizer", "tokenizer.json")

failures = 0
checks = 0


def check(ok, msg):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL:", msg)
    return ok


def write_records(records):
    os.makedirs(TMP, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=TMP, suffix=".rec")
    with os.fdopen(fd, "wb") as f:
        for r in records:
            f.write(struct.pack("<I", len(r)) + r)
    return path


def ours(tokenizer, records, special=False):
    path = write_records(records)
    try:
        args = [PROG, "--tokenize", tokenizer, path] + (["--special"] if special else [])
        res = subprocess.run(args, stdout=subprocess.PIPE)
    finally:
        os.unlink(path)
    if res.returncode != 0:
        sys.exit("%s failed with %d" % (" ".join(args[:3]), res.returncode))
    lines = res.stdout.decode().split("\n")
    return [[int(x) for x in lines[i].split()] for i in range(len(records))]


def tiktoken(records, special=False):
    inp = write_records(records)
    out = inp + ".ids"
    try:
        subprocess.run(["node", REF, "encode", RANKS, inp, out] + (["--special"] if special else []), check=True)
        with open(out, "rb") as f:
            data = f.read()
    finally:
        os.unlink(inp)
        if os.path.exists(out):
            os.unlink(out)
    res, p = [], 0
    for _ in records:
        (n,) = struct.unpack_from("<I", data, p)
        p += 4
        if n == 0xFFFFFFFF:
            res.append(None)
            continue
        res.append(list(struct.unpack_from("<%dI" % n, data, p)))
        p += 4 * n
    return res


# ---- 1. character classes ------------------------------------------------------------------------

def check_classes():
    t = time.time()
    mine = subprocess.run([PROG, "--classes"], stdout=subprocess.PIPE, check=True).stdout
    ref = subprocess.run(["node", REF, "classes"], stdout=subprocess.PIPE, check=True).stdout
    check(len(mine) == 0x110000 and len(ref) == 0x110000, "class dumps have %d and %d entries" % (len(mine), len(ref)))
    bad = [cp for cp in range(min(len(mine), len(ref))) if mine[cp] != ref[cp] and not 0xD800 <= cp <= 0xDFFF]
    check(not bad, "%d code points classified differently from tiktoken, e.g. %s" %
          (len(bad), ", ".join("U+%04X ours %c tiktoken %c" % (c, mine[c], ref[c]) for c in bad[:12])))
    print("classes: all %d code points as tiktoken's regex classifies them (%.1fs)" % (0x110000 - 2048, time.time() - t))


# ---- 2. corpus -----------------------------------------------------------------------------------

def pools():
    def rng_chars(a, b):
        return [chr(c) for c in range(a, b + 1) if not 0xD800 <= c <= 0xDFFF]
    return [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 2,
        list("0123456789"),
        list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"),
        list(" " * 8 + "\t\n\r\v\f") + ["\r\n", "\n\n", "  \n", " \t "],
        ["'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'\u017f", "\u2019s", "n't", "'x",
         "''s", "'", "\u2019"],
        ["\u00a0", "\u1680", "\u2000", "\u2005", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085",
         "\u001c", "\u001f", "\u200b", "\ufeff", "\u180e"],
        [chr(c) for c in range(0, 32)] + ["\x7f", "\x80", "\x9f", "\u00ad", "\u061c", "\ufffd", "\U000E0041",
                                          "\U0010FFFF", "\ue000"],
        rng_chars(0xC0, 0x24F) + rng_chars(0x370, 0x4FF),             # Latin, Greek, Cyrillic
        rng_chars(0x590, 0x6FF) + rng_chars(0x900, 0x97F),            # Hebrew, Arabic (digits), Devanagari
        rng_chars(0xE00, 0xE7F) + rng_chars(0x1780, 0x17FF),          # Thai, Khmer
        rng_chars(0x4E00, 0x4FFF) + rng_chars(0x3040, 0x30FF) + rng_chars(0xAC00, 0xAD00),  # CJK, kana, Hangul
        rng_chars(0x300, 0x36F) + ["\u20dd", "\ufe0f", "\ufe0e"],     # combining marks, variation selectors
        ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
         "\u2764\ufe0f", "\U0001F1FA\U0001F1F8", "\u200d", "\U0001F9D1\u200d\U0001F4BB", "\U0001F3F3\ufe0f\u200d\U0001F308",
         "\u2705", "\U0001F680", "\U0001F999"],
        ["\u00bd", "\u00b2", "\u2167", "\u2460", "\u0660", "\u0969", "\uff11", "\U0001D7D8", "\u3007", "\U00010D40"],
        # assigned in Unicode 15.0 .. 16.0: CJK Extension H and I, Todhri, Garay, Kawi
        rng_chars(0x31350, 0x313A0) + rng_chars(0x2EBF0, 0x2EC20) + rng_chars(0x105C0, 0x105F3) +
        rng_chars(0x10D40, 0x10D8F) + rng_chars(0x11F00, 0x11F59),
        ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_7|>",
         "<|eom_id|>", "<|python_tag|>", "<|end_of_text|>", "<|eot_id", "<|", "|>", "<|eot_id|><|eot_id|>"],
        ["def ", "return ", "int main(void) {", "}\n", "    ", "\t\t", "//", "/* */", "x += 1;", "0x1F", "i++",
         "==", "!=", "->", "::", "#include <stdio.h>\n", "printf(\"%d\\n\", x);"],
    ]


def random_string(rng, pl, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            c = rng.choice(["abcdefghij", "!?.-=#", "0123456789", " ", "\n", " \n", "\t", "\r\n", "\u4e2d\u6587",
                            "\U0001F600"])
            out.append("".join(rng.choice(c) if len(c) > 1 else c for _ in range(rng.randint(10, 300))))
        elif r < 0.07:
            cp = rng.randrange(0x110000)
            out.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0x41))
        else:
            out.append(rng.choice(rng.choice(pl)))
    return "".join(out)


def real_files():
    """Prose and code from this machine: the repository's sources, Debian's licences, C headers."""
    recs = []
    for d in ("src/tokenizer", "src/cli", "tests"):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and name.endswith((".c", ".h", ".py")) and "unicode_tables" not in name:
                with open(p, "rb") as f:
                    recs.append(f.read()[:60000])
    for name in ("GPL-3", "Apache-2.0", "Artistic", "MPL-2.0"):
        p = "/usr/share/common-licenses/" + name
        if os.path.exists(p):
            with open(p, "rb") as f:
                recs.append(f.read())
    for name in ("stdio.h", "stdlib.h", "string.h", "math.h", "unistd.h"):
        p = "/usr/include/" + name
        if os.path.exists(p):
            with open(p, "rb") as f:
                recs.append(f.read())
    good = []
    for r in recs:
        try:
            r.decode("utf-8")
            good.append(r)
        except UnicodeDecodeError:
            pass
    return good


def corrupt(rng, data):
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1", b"\xc3", b"\xe2\x82", b"\xe0\x80\x80", b"\xed\xa0\x80",
           b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe\xff", b"\xf0", b"\xe2"]
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(b))
        b[pos:pos] = rng.choice(bad) if rng.random() < 0.8 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(b)


def compare(name, records, want, got):
    bad = 0
    for i, r in enumerate(records):
        if got[i] != want[i]:
            bad += 1
            if bad <= 4:
                w, g = want[i], got[i]
                k = next((j for j in range(min(len(w), len(g))) if w[j] != g[j]), min(len(w), len(g)))
                print("  %s: record %d %r\n    tiktoken: %r\n    llamac:   %r" % (name, i, r[:120], w[k:k + 10], g[k:k + 10]))
    check(bad == 0, "%s: %d of %d records differ from tiktoken" % (name, bad, len(records)))
    return bad


def check_corpus(rng):
    pl = pools()
    records = [random_string(rng, pl, rng.randint(1, 120)).encode("utf-8") for _ in range(1500)]
    records += [b"", b" ", b"\n", b"  \n\n  ", b" " * 3000, b"\n" * 3000, b"\r\n" * 1000, b"\t" * 700 + b"x",
                b"9" * 1000, b"a" * 4000, "\U0001F468\u200d\U0001F469\u200d\U0001F467".encode() * 50,
                "\u4e2d".encode() * 1000, b"<|eot_id|>", b" <|eot_id|> ", b"<|begin_of_text|>Hello<|eot_id|>"]
    records += real_files()
    n_bytes = sum(map(len, records))
    t = time.time()
    want = tiktoken(records)
    want_sp = tiktoken(records, special=True)
    t_ref = time.time() - t
    t = time.time()
    got_model = ours(RANKS, records)
    got_json = ours(JSON30, records)
    got_model_sp = ours(RANKS, records, special=True)
    t_ours = time.time() - t
    bad = compare("tokenizer.model", records, want, got_model)
    bad += compare("tokenizer.json", records, want, got_json)
    bad += compare("tokenizer.model with parse_special", records, want_sp, got_model_sp)
    n_special = sum(1 for a, b in zip(want, want_sp) if a != b)
    check(n_special > 50, "only %d records contain special-token text" % n_special)
    print("corpus: %d records, %.2f MB (%d with special-token text): %s tiktoken, for tokenizer.model and "
          "tokenizer.json, with and without parse_special (tiktoken %.1fs, llamac %.1fs incl. loads)" %
          (len(records), n_bytes / 1e6, n_special, "all match" if not bad else "NOT all matching", t_ref, t_ours))

    # ill-formed UTF-8: every byte kept
    ranks = {}
    with open(RANKS, "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[int(rank)] = base64.b64decode(tok)
    bad_recs = [corrupt(rng, random_string(rng, pl, rng.randint(1, 60)).encode("utf-8")) for _ in range(500)]
    got = ours(RANKS, bad_recs)
    lost = sum(1 for r, ids in zip(bad_recs, got) if b"".join(ranks.get(i, b"?") for i in ids) != r)
    n_invalid = sum(1 for r in bad_recs if not valid_utf8(r))
    check(lost == 0, "%d of %d ill-formed records do not decode back to their bytes" % (lost, len(bad_recs)))
    check(n_invalid > 400, "only %d of the corrupted records are ill-formed" % n_invalid)
    print("ill-formed UTF-8: %d records decode back to their exact bytes" % len(bad_recs))


def valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# ---- 3. special tokens ---------------------------------------------------------------------------

def check_specials():
    with open(JSON30, encoding="utf-8") as f:
        a30 = {t["id"]: t["content"] for t in json.load(f)["added_tokens"]}
    # Meta's tokenizer.py for Llama 3.1 and later (the shared tokenizer.json is Llama 3.0's, which names
    # ids 128004, 128005, 128008 and 128010.. reserved tokens instead)
    named = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128002: "<|reserved_special_token_0|>",
             128003: "<|reserved_special_token_1|>", 128004: "<|finetune_right_pad_id|>",
             128005: "<|reserved_special_token_2|>", 128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
             128008: "<|eom_id|>", 128009: "<|eot_id|>", 128010: "<|python_tag|>"}
    for i in range(128011, 128256):
        named[i] = "<|reserved_special_token_%d|>" % (i - 128011 + 3)
    ids = sorted(named)
    got = ours(RANKS, [named[i].encode() for i in ids], special=True)
    bad = [(named[i], i, g) for i, g in zip(ids, got) if g != [i]]
    check(not bad, "special tokens of tokenizer.model differ from Meta's list: %s" % bad[:5])
    # The same ids are special in tokenizer.json, and the names both versions share sit at the same ids.
    shared = [i for i in ids if named[i] == a30.get(i)]
    check(sorted(a30) == ids, "tokenizer.json's added tokens are not ids 128000..128255")
    check(len(shared) >= 7 and all(named[i] == a30[i] for i in (128000, 128001, 128006, 128007, 128009)),
          "tokenizer.json disagrees on the names both Llama 3 versions use")
    got_json = ours(JSON30, [a30[i].encode() for i in ids], special=True)
    check(all(g == [i] for i, g in zip(ids, got_json)), "tokenizer.json's added tokens do not tokenize to their ids")
    plain = ours(RANKS, [named[i].encode() for i in ids])
    check(all(len(p) > 1 and all(x < 128000 for x in p) for p in plain),
          "special-token text without parse_special did not stay plain text")
    print("special tokens: 256 at 128000..128255, each by its name with parse_special and plain text without; "
          "%d names as in the Llama 3.0 tokenizer.json (which calls the 3.1 additions reserved tokens)" % len(shared))


# ---- 4. llama.cpp vectors ------------------------------------------------------------------------

def check_vectors():
    base = os.path.join(SHARED, "testdata", "tokenizer", "ggml-vocab-llama-bpe.gguf")
    with open(base + ".inp", "rb") as f:
        inp = f.read().decode("utf-8").split("\n__ggml_vocab_test__\n")[:-1]  # each string ends with one
    with open(base + ".out") as f:
        out = [[int(x) for x in line.split()] for line in f.read().split("\n")]
    n = min(len(inp), len(out))
    got = ours(RANKS, [s.encode("utf-8") for s in inp[:n]])
    bad = [i for i in range(n) if got[i] != out[i]]
    check(n >= 30 and not bad, "llama.cpp vectors through tokenizer.model: %d of %d differ (first %r)" %
          (len(bad), n, [inp[i] for i in bad[:3]]))
    print("llama.cpp vectors: %d strings through tokenizer.model match" % n)


def main():
    if not os.path.exists(PROG):
        sys.exit("%s not built" % PROG)
    if not shutil.which("node") or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "tiktoken")):
        sys.exit("the tiktoken reference is missing: run scripts/install-deps.sh (node, then npm ci in tests/node)")
    seed = int(os.environ.get("LLAMAC_TEST_SEED", "20250101"))
    print("seed %d (LLAMAC_TEST_SEED)" % seed)
    rng = random.Random(seed)
    check_classes()
    check_vectors()
    check_specials()
    check_corpus(rng)
    print("%d passed, %d failed" % (checks - failures, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
