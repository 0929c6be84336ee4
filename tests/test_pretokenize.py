#!/usr/bin/python3
"""Llama 3 pre-tokenizer and byte-level BPE against independent references.

1. Character classes (src/tokenizer/unicode_tables.c) against python3-regex's \\p{L}, \\p{N} and \\s
   for every code point. The tables know a newer Unicode (16.0, as tiktoken does) than python3-regex
   (15.0), so code points python3-regex leaves unassigned (Cn) may differ, and nothing else may.
2. The hand-written splitter (src/tokenizer/pretokenize.c) against the Llama 3 regex run by
   python3-regex on a randomized corpus: many scripts, digits, emoji with ZWJ, combining marks,
   CR/LF runs, tabs, Unicode spaces, ' and U+2019 apostrophes in all cases, and ill-formed UTF-8, which
   the reference decodes with errors="replace" (one U+FFFD per maximal subpart) and maps back to bytes.
3. Whole encodes (tokenizer.json merges) against tiktoken's algorithm written out here over Meta's
   tokenizer.model ranks: a different file and a different merge rule (rank of the merged bytes).

Our side comes from the test_tokenizer_bpe program's dump modes. Needs Debian's python3-regex.
Set LLAMAC_TEST_SEED to vary the corpus (the seed is printed).
"""
import base64
import codecs
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import unicodedata

try:
    import regex
except ImportError:
    sys.exit("python3-regex is missing (apt-get install python3-regex)")

PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
       r"\s*[\r\n]+|\s+(?!\S)|\s+")
RX = regex.compile(PAT)

SHARED = os.environ.get("LLAMAC_SHARED", "../shared")
BUILD = os.path.dirname(os.environ["LLAMAC"]) if os.environ.get("LLAMAC") else "build"
PROG = os.path.join(BUILD, "test_tokenizer_bpe")
TMP = os.environ.get("LLAMAC_TMP", tempfile.gettempdir())

failures = 0
checks = 0


def check(ok, msg):
    global failures, checks
    checks += 1
    if not ok:
        failures += 1
        print("FAIL:", msg)
    return ok


def run(args, records=None):
    """Runs PROG with args; records (bytes) go in a file appended as the last argument."""
    path = None
    if records is not None:
        os.makedirs(TMP, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=TMP, suffix=".rec")
        with os.fdopen(fd, "wb") as f:
            for r in records:
                f.write(struct.pack("<I", len(r)) + r)
        args = args + [path]
    try:
        res = subprocess.run([PROG] + args, stdout=subprocess.PIPE, env=dict(os.environ, LLAMAC_SHARED=SHARED))
    finally:
        if path:
            os.unlink(path)
    if res.returncode != 0:
        sys.exit("%s %s failed with %d" % (PROG, " ".join(args[:1]), res.returncode))
    return res.stdout


# ---- 1. character classes ------------------------------------------------------------------------

def check_classes():
    ours = run(["--classes"])
    check(len(ours) == 0x110000, "--classes printed %d classes" % len(ours))
    everything = "".join(chr(c) for c in range(0x110000))
    ref = bytearray(b"0" * 0x110000)
    for cls, prop in ((b"1", r"\p{L}"), (b"2", r"\p{N}"), (b"3", r"\s")):
        for m in regex.finditer(prop, everything):
            ref[m.start()] = cls[0]
    # The tables know a newer Unicode than python3-regex (see scripts/gen_unicode_tables.py; the test
    # against tiktoken, tests/test_tokenizer_tiktoken.py, checks those code points): they may differ
    # only where python3-regex has nothing assigned.
    unassigned = {m.start() for m in regex.finditer(r"\p{Cn}", everything)}
    newer = set()
    bad = []
    for cp in range(0x110000):
        if ours[cp] != ref[cp]:
            if cp in unassigned:
                newer.add(cp)
            else:
                bad.append(cp)
    check(not bad, "classes differ from python3-regex at code points it knows: %s" %
          ", ".join("U+%04X ours %c regex %c" % (c, ours[c], ref[c]) for c in bad[:20]))
    print("classes: %d code points agree with python3-regex; %d differ only because the tables know a newer "
          "Unicode than python3-regex" % (0x110000 - len(newer) - len(bad), len(newer)))
    return newer


# ---- corpus --------------------------------------------------------------------------------------

def rng_pools(rng, newer):
    def rangechars(a, b):
        return [chr(c) for c in range(a, b + 1) if c not in newer]
    pools = [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 2,
        list("0123456789"),
        list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"),
        list(" " * 8 + "\t\n\r\v\f" + "\r\n"),
        ["'", "'", "\u2019", "\u2018", "`"] + list("sStTmMdDrReEvVlL") + ["\u017f", "\u212a", "\u0130"],
        ["'s", "'S", "'t", "'re", "'RE", "'rE", "'ve", "'Ve", "'m", "'ll", "'LL", "'lL", "'d", "'D", "'\u017f",
         "\u2019s", "\u2019ll", "n't", "'x", "''s"],
        ["\u00a0", "\u1680", "\u2000", "\u2005", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
         "\u0085", "\u001c", "\u001d", "\u001e", "\u001f", "\u200b", "\ufeff", "\u180e"],
        rangechars(0xC0, 0x24F),                    # Latin-1 / Extended
        rangechars(0x370, 0x3FF) + rangechars(0x400, 0x4FF),   # Greek, Cyrillic
        rangechars(0x600, 0x6FF) + rangechars(0x590, 0x5FF),   # Arabic (with its digits), Hebrew
        rangechars(0x900, 0x97F) + rangechars(0xE00, 0xE7F),   # Devanagari (marks), Thai
        rangechars(0x4E00, 0x4FFF) + rangechars(0x3040, 0x30FF) + rangechars(0xAC00, 0xAD00),  # CJK, kana, Hangul
        rangechars(0x300, 0x36F) + ["\u20dd", "\ufe0f", "\ufe0e"],  # combining marks, variation selectors
        ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\u2764\ufe0f",
         "\U0001F1FA\U0001F1F8", "\u200d", "\U0001F9D1\u200d\U0001F4BB", "\u2705", "\U0001F680"],
        ["\u00bd", "\u00b2", "\u2167", "\u2460", "\u0660", "\u0969", "\uff11", "\U0001D7D8", "\u3007"],
        ["\ufffd", "\x00", "\x7f", "\u00ad", "\u061c", "\U000E0041", "\U0010FFFF", "\uE000"],
    ]
    return pools


def random_string(rng, pools, newer, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.03:
            # a long run: letters, punctuation, digits or spaces, for the long-pre-token paths
            c = rng.choice(["abcdefghij", "!?.-=", "0123456789", " ", "\u4e2d\u6587", " \n"])
            out.append("".join(rng.choice(c) for _ in range(rng.randint(10, 400))))
        elif r < 0.08:
            cp = rng.randrange(0x110000)
            if 0xD800 <= cp < 0xE000 or cp in newer:
                cp = 0x41
            out.append(chr(cp))
        else:
            out.append(rng.choice(rng.choice(pools)))
    return "".join(out)


def corrupt(rng, data):
    """Splices ill-formed UTF-8 into valid bytes: stray continuations, truncated sequences, overlongs,
    surrogates, out-of-range lead bytes."""
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1", b"\xc3", b"\xe2\x82", b"\xe0\x80\x80", b"\xed\xa0\x80",
           b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe\xff", b"\xf0", b"\xe2"]
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(b))
        ins = rng.choice(bad) if rng.random() < 0.8 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        b[pos:pos] = ins
    return bytes(b)


# ---- 2. splitter ---------------------------------------------------------------------------------

_errors = []


def _record(exc):
    _errors.append((exc.start, exc.end))
    return ("\ufffd", exc.end)


codecs.register_error("llamac_record", _record)


def ref_splits(data):
    """End byte offsets of the regex's matches on data decoded with one U+FFFD per maximal subpart."""
    del _errors[:]
    text = data.decode("utf-8", "llamac_record")
    errs = list(_errors)
    starts = []       # byte offset of each character
    bp = 0
    ei = 0
    for ch in text:
        starts.append(bp)
        if ei < len(errs) and errs[ei][0] == bp:
            bp = errs[ei][1]
            ei += 1
        else:
            bp += len(ch.encode("utf-8", "surrogatepass"))
    assert bp == len(data) and ei == len(errs)
    starts.append(bp)
    ends = []
    pos = 0
    for m in RX.finditer(text):
        assert m.start() == pos, "regex skipped text"
        pos = m.end()
        ends.append(starts[pos])
    assert pos == len(text)
    return ends


def check_splits(rng, pools, newer, n_records):
    records = []
    for i in range(n_records):
        s = random_string(rng, pools, newer, rng.randint(1, 60)).encode("utf-8")
        records.append(corrupt(rng, s) if i % 4 == 3 else s)
    # fixed cases worth keeping whatever the seed
    records += [b"", b" ", b"  ", b"\n", b" \n ", b"a \n", b"  \r\n\r\n  x", b"'s", b"'S'", b"x'll'", b"\t\tx",
                "'\u017f'\u017fx".encode(), b" !!\n\n", b"  !", "\u00a0\u00a0a".encode(), b"123456789",
                b"\xe2\x82a", b"\xed\xa0\x80a", b"\xf0\x9f\x98 ", b"a\xc3"]
    t = time.time()
    out = run(["--pretok"], records).decode().split("\n")
    dt = time.time() - t
    bad = 0
    for i, r in enumerate(records):
        ours = [int(x) for x in out[i].split()]
        want = ref_splits(r)
        if ours != want:
            bad += 1
            if bad <= 5:
                print("split mismatch on %r\n  regex: %r\n  ours:  %r" %
                      (r, [r[a:b] for a, b in zip([0] + want, want)], [r[a:b] for a, b in zip([0] + ours, ours)]))
    check(bad == 0, "%d of %d records split differently from python3-regex" % (bad, len(records)))
    print("splits: %d records, %d bytes, all %s python3-regex (%.2fs)" %
          (len(records), sum(map(len, records)), "match" if bad == 0 else "NOT matching", dt))


# ---- 3. whole encodes vs tiktoken's algorithm ----------------------------------------------------

def load_ranks():
    ranks = {}
    with open(os.path.join(SHARED, "models/llama3-tokenizer/tokenizer.model"), "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def tiktoken_piece(piece, ranks):
    """tiktoken's _byte_pair_merge: merge the adjacent pair whose concatenation has the lowest rank,
    leftmost on ties, until none is a token."""
    none = 1 << 62
    parts = [piece[i:i + 1] for i in range(len(piece))]

    def rank(i):
        return ranks.get(parts[i] + parts[i + 1], none)

    rk = [rank(i) for i in range(len(parts) - 1)]
    while rk:
        best = min(rk)
        if best == none:
            break
        i = rk.index(best)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
        del rk[i]
        if i < len(rk):
            rk[i] = rank(i)
        if i > 0:
            rk[i - 1] = rank(i - 1)
    return [ranks[p] for p in parts]


def tiktoken_encode(data, ranks, cache):
    ids = []
    prev = 0
    for end in ref_splits(data):
        piece = data[prev:end]
        prev = end
        r = ranks.get(piece)
        if r is not None:
            ids.append(r)
            continue
        if piece not in cache:
            cache[piece] = tiktoken_piece(piece, ranks)
        ids.extend(cache[piece])
    return ids


def check_encodes(rng, pools, newer, n_records):
    ranks = load_ranks()
    check(len(ranks) == 128000, "tokenizer.model has %d ranks" % len(ranks))
    records = []
    for i in range(n_records):
        s = random_string(rng, pools, newer, rng.randint(1, 80)).encode("utf-8")
        records.append(corrupt(rng, s) if i % 5 == 4 else s)
    # Real text: this repository's C sources and the licence texts Debian ships.
    for path in sorted(os.listdir("src/tokenizer"))[:6]:
        if path.endswith(".c") and "unicode_tables" not in path:
            with open(os.path.join("src/tokenizer", path), "rb") as f:
                records.append(f.read()[:40000])
    for name in ("GPL-3", "Apache-2.0"):
        p = "/usr/share/common-licenses/" + name
        if os.path.exists(p):
            with open(p, "rb") as f:
                records.append(f.read())
    t = time.time()
    path = os.path.join(SHARED, "models/llama3-tokenizer/tokenizer.json")
    out = run(["--encode", path], records).decode().split("\n")
    dt = time.time() - t
    cache = {}
    bad = 0
    for i, r in enumerate(records):
        ours = [int(x) for x in out[i].split()]
        want = tiktoken_encode(r, ranks, cache)
        if ours != want:
            bad += 1
            if bad <= 5:
                k = next((j for j in range(min(len(ours), len(want))) if ours[j] != want[j]), min(len(ours), len(want)))
                print("encode mismatch on %r\n  tiktoken: %r\n  ours:     %r" % (r[:200], want[k:k + 12], ours[k:k + 12]))
    check(bad == 0, "%d of %d records encode differently from the tiktoken algorithm" % (bad, len(records)))
    print("encodes: %d records, %d bytes, all %s tiktoken's algorithm on tokenizer.model (%.2fs incl. load)" %
          (len(records), sum(map(len, records)), "match" if bad == 0 else "NOT matching", dt))


def main():
    if not os.path.exists(PROG):
        sys.exit("%s not built" % PROG)
    seed = int(os.environ.get("LLAMAC_TEST_SEED", "20240601"))
    print("seed %d (LLAMAC_TEST_SEED), python3-regex %s, unicodedata %s" %
          (seed, regex.__version__, unicodedata.unidata_version))
    rng = random.Random(seed)
    newer = check_classes()
    pools = rng_pools(rng, newer)
    check_splits(rng, pools, newer, 4000)
    check_encodes(rng, pools, newer, 1500)
    print("%d passed, %d failed" % (checks - failures, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
