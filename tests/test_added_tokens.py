#!/usr/bin/python3
"""Added tokens (tokenizer.json added_tokens: special -> control, else user-defined) cut out of the text
before byte-level BPE, against an independent Python reimplementation of llama.cpp's
tokenizer_st_partition: every token in turn, longest first (equal lengths by id), cuts the remaining
text fragments at its leftmost non-overlapping occurrences; control tokens only with --special,
user-defined ones always.

The tokenizer.json has only byte tokens and three merges (Ġt, he, Ġthe) that the texts here avoid, so a
text fragment encodes to its bytes' ids and the expected ids need no BPE.

  * fixed cases: tokens that are prefixes, suffixes and infixes of each other, an added token equal to
    a byte's vocab entry, the same content added twice (control and user-defined), adjacent matches,
    matches at the start and end, empty text;
  * random cases: random texts over a small alphabet and random overlapping added tokens, with and
    without --special;
  * hostile: 40,000 user-defined added tokens and text full of them: 64 KB must agree with the
    reference, 1 MB must tokenize within 60 s of CPU time, a bound that only catches hangs (the
    token-by-token partition took 83 s); the times are printed.
    `test_added_tokens.py --bench N` times N tokens x 1 MB without the reference.
"""

import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hostile  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
TMP = os.path.join(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test"), "added_tokens")
ALPHABET = "abcd<>|"  # no h, e, t or space: no merge applies, every byte is its own id
N_BASE = 256 + 3      # byte tokens, then the three merged tokens

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def tokenizer_json(added):
    """added: [(id, content, special)] with ids >= N_BASE, or id < 256 restating a byte's entry."""
    base = json.loads(hostile.tiny_hf_json())
    base["added_tokens"] = [{"id": i, "content": c, "special": s} for i, c, s in added]
    return json.dumps(base, ensure_ascii=False).encode()


def reference(text, added, special):
    """llama.cpp's tokenizer_st_partition on bytes, then byte ids for the text fragments. Matched bytes
    are blanked with NUL (no token here contains one), so a search over the whole buffer never crosses a
    fragment boundary and finds what a search of each fragment would."""
    toks = sorted(((len(c.encode()), i, c.encode()) for i, c, s in added if s is False or special),
                  key=lambda x: (-x[0], x[1]))
    buf = bytearray(text.encode())
    hits = {}
    for n, tid, t in toks:
        pos = buf.find(t)
        while pos >= 0:
            hits[pos] = (tid, n)
            buf[pos:pos + n] = bytes(n)
            pos = buf.find(t, pos + n)
    ids, pos, raw = [], 0, text.encode()
    for at in sorted(hits):
        ids.extend(raw[pos:at])
        ids.append(hits[at][0])
        pos = at + hits[at][1]
    ids.extend(raw[pos:])
    return ids


def llamac_ids(path, text, special, timeout=60, cpu_limit=None):
    args = [LLAMAC, "tokenize", "--tokenizer", path, "--no-bos", "--json"]
    if special:
        args.append("--special")
    if len(text) > 1000:
        tf = path + ".txt"
        with open(tf, "w") as f:
            f.write(text)
        args += ["--file", tf]
    else:
        args.append(text)
    t0 = time.time()
    limit = None
    if cpu_limit:  # CPU seconds, not wall time: a loaded machine does not make the child fail
        def limit():
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit))
    r = subprocess.run(args, capture_output=True, timeout=timeout, preexec_fn=limit)
    dt = time.time() - t0
    if r.returncode != 0:
        return None, dt, r.stderr.decode(errors="replace").strip()
    return json.loads(r.stdout), dt, ""


def write_tok(name, added):
    path = os.path.join(TMP, name + ".json")
    with open(path, "wb") as f:
        f.write(tokenizer_json(added))
    return path


def check(name, added, texts):
    path = write_tok(name, added)
    for text in texts:
        for special in (False, True):
            got, _, err = llamac_ids(path, text, special)
            want = reference(text, added, special)
            if got != want:
                fail(f"{name} special={special} text={text!r}: llamac {got if got is not None else err}, "
                     f"reference {want}")


def fixed_cases():
    b = N_BASE
    # "<|a|>" vs "<|a|>b": the longer wins where both start; "a|>b" and "<|a" overlap it from either side
    check("prefix_suffix", [(b, "<|a|>", False), (b + 1, "<|a|>b", False), (b + 2, "a|>b", False),
                            (b + 3, "<|a", True), (b + 4, "|>", True)],
          ["", "<|a|>", "<|a|>b", "<|a|><|a|>", "<|a|>b<|a|>", "x<|a|>bb", "<|a", "a|>b<|a|>b", "<|<|a|>|>",
           "<|a|>bb<|a|>b|>", "|>|>|>", "<<|a|>b>", "a|>a|>b"])
    # longer first even when a shorter token starts further left: "ab" + "bcd" on "abcd" -> a, bcd
    check("longer_wins", [(b, "ab", False), (b + 1, "bcd", False), (b + 2, "cd", False)],
          ["abcd", "abcdab", "ababcd", "bcdab", "abcbcd", "cdcd", "abab"])
    # equal lengths: the lower id goes first over the whole text
    check("equal_len_by_id", [(b + 1, "ab", False), (b, "ba", False), (b + 2, "aa", False)],
          ["aba", "bab", "abab", "baba", "aaa", "aaaa", "abaab", "baab"])
    # self-overlap: leftmost non-overlapping
    check("self_overlap", [(b, "aa", False), (b + 1, "aaa", True)], ["a", "aa", "aaa", "aaaa", "aaaaa", "aaaaaaa"])
    # the same content twice: the control one (lower id) only with --special, else the user-defined one
    check("duplicate", [(b, "<|x|>", True), (b + 1, "<|x|>", False), (b + 2, "x|", False)],
          ["<|x|>", "a<|x|><|x|>b", "<|x|", "x|>"])
    # an added token that restates a byte's vocab entry (id 97 = "a") and a longer one containing it
    check("restated_byte", [(97, "a", False), (b, "ba", False), (b + 1, "<a>", True)],
          ["a", "ba", "bab", "<a>", "<ba>", "aaa"])


def random_cases(rng, n_sets, n_texts):
    for k in range(n_sets):
        n_tok = rng.randint(1, 12)
        added, seen = [], set()
        ids = rng.sample(range(N_BASE, N_BASE + 40), n_tok)
        for tid in ids:
            c = "".join(rng.choice(ALPHABET[:rng.randint(2, 4)]) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.1 and seen:
                c = rng.choice(sorted(seen))  # the same content under another id
            seen.add(c)
            added.append((tid, c, rng.random() < 0.4))
        texts = []
        for _ in range(n_texts):
            parts = []
            for _ in range(rng.randint(0, 8)):
                if rng.random() < 0.5:
                    parts.append(rng.choice(added)[1])
                else:
                    parts.append("".join(rng.choice(ALPHABET[:4]) for _ in range(rng.randint(1, 4))))
            texts.append("".join(parts))
        check(f"random{k}", added, texts)


def hostile_tokens(n, rng):
    """n distinct user-defined tokens: short ones over a small alphabet (they overlap everywhere) and
    longer named ones, as a model folder could ship."""
    toks, seen = [], set()
    while len(toks) < n:
        if rng.random() < 0.5:
            c = "".join(rng.choice("abcd") for _ in range(rng.randint(3, 9)))
        else:
            c = "<|tok_%d|>" % rng.randrange(10 * n)
        if c not in seen:
            seen.add(c)
            toks.append((N_BASE + len(toks), c, False))
    return toks


def hostile_text(toks, size, rng):
    parts, n = [], 0
    while n < size:
        p = rng.choice(toks)[1] if rng.random() < 0.5 else "".join(rng.choice("abcd") for _ in range(rng.randint(1, 6)))
        parts.append(p)
        n += len(p)
    return "".join(parts)[:size]


def hostile_case(n_tok, size, compare, bench=False):
    rng = random.Random(n_tok)
    toks = hostile_tokens(n_tok, rng)
    text = hostile_text(toks, size, rng)
    path = write_tok(f"hostile{n_tok}", toks)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    got, dt, err = llamac_ids(path, text, False, timeout=None if bench else 900, cpu_limit=None if bench else 60)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    print(f"{n_tok} added tokens x {size} bytes: {dt:.2f} s ({cpu:.2f} s CPU)", flush=True)
    if got is None:
        fail(f"hostile {n_tok} tokens x {size} bytes: {err or 'killed after 60 s of CPU time'}")
    elif compare:
        t0 = time.time()
        want = reference(text, toks, False)
        print(f"  (Python reference: {time.time() - t0:.1f} s)", flush=True)
        if got != want:
            i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            fail(f"hostile {n_tok} tokens: differs from the reference at id {i} ({len(got)} vs {len(want)} ids)")


def main():
    os.makedirs(TMP, exist_ok=True)
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        hostile_case(int(sys.argv[2]), 1 << 20, False, bench=True)
        return 1 if failures else 0
    fixed_cases()
    random_cases(random.Random(9), 60, 8)
    for size, compare in ((64 << 10, True), (1 << 20, False)):
        try:
            hostile_case(40000, size, compare)
        except subprocess.TimeoutExpired:
            fail(f"40000 added tokens x {size} bytes: no answer within 900 s")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
