#!/usr/bin/python3
"""`llamac batch` end to end, and `llamac bench -b`.

* JSONL in, JSONL out in input order (index 0, 1, ...), with text, prompt_tokens, completion_tokens,
  finish_reason; each text equals `llamac generate --json`'s text for the same prompt and -n (greedy,
  and sampled with the same seed), prompt_tokens its prompt_ids, completion_tokens its ids;
* the same file through a tiny KV budget (preemption, reported in the summary), one sequence at a
  time, small steps, no prefix cache: byte-identical output;
* stop strings (a string or an array): the text ends before the first one, finish_reason "stop";
* "messages" in the model's chat format equal `llamac generate --chat` (stories260K: the Llama 2
  format; a synthetic Llama 3 model: the Llama 3 format);
* a shared prefix: the summary reports tokens from the prefix cache;
* bad input (malformed JSON, no prompt, a prompt longer than the context, bad field types, an empty or
  unreadable file; two objects on a line, trailing junk, a NUL byte, duplicate keys, too deep; more
  stop strings or messages than the limits): one error line naming the line, a non-zero exit, no output file;
* `llamac bench -b 1,4 --json`: one row per batch size with the batched figures and KV fields.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
TMP = os.environ.get("LLAMAC_TMP") or tempfile.gettempdir()
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
GOLDEN = os.path.join(SHARED, "testdata", "golden", "stories260K-greedy.jsonl")

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)
    return cond


def run(args, timeout=300):
    p = subprocess.run([LLAMAC] + args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", errors="replace"), p.stderr.decode("utf-8", errors="replace")


def write_jsonl(path, rows, raw=None):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        if raw:
            f.write(raw)


def read_jsonl(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [json.loads(l) for l in f if l.strip()]


def generate(model, prompt, n, extra=()):
    rc, out, err = run(["generate", "-m", model, "-p", prompt, "-n", str(n), "--json", "--threads", "2"] + list(extra))
    if rc != 0:
        raise RuntimeError("generate: " + err[-300:])
    return json.loads(out)


def batch(model, rows, extra=(), out_name="out.jsonl", raw=None, timeout=300):
    inp = os.path.join(TMP, "batch_in.jsonl")
    out = os.path.join(TMP, out_name)
    if os.path.exists(out):
        os.remove(out)
    write_jsonl(inp, rows, raw)
    rc, stdout, err = run(["batch", "-m", model, "--input", inp, "--output", out, "--threads", "2"] + list(extra), timeout)
    return rc, (read_jsonl(out) if rc == 0 and os.path.exists(out) else None), err, out


def main():
    os.makedirs(TMP, exist_ok=True)
    gold = [json.loads(l)["prompt"] for l in open(GOLDEN)]
    prompts = gold[:6] + ["Tim", "The sun was", "Once upon a time, there was a little girl named Lily. She loved to play"]
    ns = [24, 40, 7, 60, 33, 16, 80, 5, 50]
    rows = [{"prompt": p, "max_tokens": n} for p, n in zip(prompts, ns)]

    # greedy: every text equals generate's
    rc, res, err, _ = batch(STORIES, rows, ["--temp", "0"])
    if check(rc == 0 and res is not None, "batch exits 0 (%s)" % err.strip()[-300:]):
        check([r.get("index") for r in res] == list(range(len(rows))), "one result per line, in input order")
        for i, (p, n) in enumerate(zip(prompts, ns)):
            r = res[i]
            missing = [k for k in ("index", "text", "prompt_tokens", "completion_tokens", "finish_reason") if k not in r]
            if not check(not missing, "result %d has every field (missing %s)" % (i, missing)):
                continue
            g = generate(STORIES, p, n, ["--temp", "0"])
            check(r["text"] == g["text"], "result %d: text equals generate's (%r vs %r)" % (i, r["text"][:60], g["text"][:60]))
            check(r["prompt_tokens"] == len(g["prompt_ids"]), "result %d: prompt_tokens %d" % (i, r["prompt_tokens"]))
            check(r["completion_tokens"] == len(g["ids"]), "result %d: completion_tokens %d vs %d" % (i, r["completion_tokens"], len(g["ids"])))
            check(r["finish_reason"] == ("length" if len(g["ids"]) == n else "stop"), "result %d: finish_reason %s" % (i, r["finish_reason"]))
        m = re.search(r"batch: (\d+) requests .*generated (\d+) tok", err)
        check(m is not None and int(m.group(1)) == len(rows), "summary line on stderr: %s" % err.strip().splitlines()[-1:])
        base = open(os.path.join(TMP, "out.jsonl"), "rb").read()

        # the same through preemption, one at a time, tiny steps, no prefix cache: the same bytes
        for extra in (["--kv-tokens", "160", "--block-size", "8", "--max-seqs", "4"], ["--max-seqs", "1"],
                      ["--step-tokens", "7", "--no-prefix-cache"], ["--kv-mem", "1M", "--step-tokens", "5000"]):
            rc2, res2, err2, path2 = batch(STORIES, rows, ["--temp", "0"] + extra, "out2.jsonl")
            same = rc2 == 0 and open(path2, "rb").read() == base
            check(same, "%s: identical output (%s)" % (" ".join(extra), err2.strip()[-200:]))
            if extra[0] == "--kv-tokens":
                m = re.search(r"preemptions (\d+)", err2)
                check(m is not None and int(m.group(1)) > 0, "a KV budget of 160 positions preempts (%s)" % (m and m.group(0)))

        # output on stdout when no --output
        inp = os.path.join(TMP, "batch_in.jsonl")
        rc3, out3, err3 = run(["batch", "-m", STORIES, "--input", inp, "--temp", "0", "--threads", "2"])
        check(rc3 == 0 and out3.encode() == base, "stdout output equals the file output")

    # sampled: per-line seeds, the batch equals generate with that seed
    srows = [{"prompt": prompts[i], "max_tokens": 30, "seed": 100 + i, "temperature": 0.9, "top_p": 0.9} for i in range(4)]
    rc, res, err, _ = batch(STORIES, srows)
    if check(rc == 0 and res is not None, "sampled batch exits 0 (%s)" % err.strip()[-200:]):
        for i, r in enumerate(res):
            g = generate(STORIES, prompts[i], 30, ["--seed", str(100 + i), "--temp", "0.9", "--top-p", "0.9"])
            check(r["text"] == g["text"], "sampled result %d equals generate --seed %d" % (i, 100 + i))
    # without a per-line seed, request i uses --seed + i
    rc, res, err, _ = batch(STORIES, [{"prompt": prompts[0], "max_tokens": 20}] * 3, ["--seed", "5"])
    if check(rc == 0 and res is not None, "seeded batch exits 0"):
        for i, r in enumerate(res):
            g = generate(STORIES, prompts[0], 20, ["--seed", str(5 + i)])
            check(r["text"] == g["text"], "request %d without a seed equals generate --seed %d" % (i, 5 + i))

    # stop strings
    g = generate(STORIES, prompts[1], 60, ["--temp", "0"])
    text = g["text"]
    stop_a, stop_b = text[30:36], text[45:50]
    stop_rows = [{"prompt": prompts[1], "max_tokens": 60, "stop": stop_a},
                 {"prompt": prompts[1], "max_tokens": 60, "stop": ["never appears", stop_b, stop_a]},
                 {"prompt": prompts[1], "max_tokens": 60, "stop": ["never appears"]}]
    rc, res, err, _ = batch(STORIES, stop_rows, ["--temp", "0"])
    if check(rc == 0 and res is not None, "stop-string batch exits 0 (%s)" % err.strip()[-200:]):
        want = text[:text.find(stop_a)]
        check(res[0]["text"] == want and res[0]["finish_reason"] == "stop", "stop string: text cut before it (%r)" % res[0]["text"][-20:])
        check(res[1]["text"] == want and res[1]["finish_reason"] == "stop", "stop array: the first match wins")
        check(res[2]["text"] == text and res[2]["finish_reason"] == "length", "a stop string that never appears changes nothing")

    # messages: the model's chat format, as generate --chat
    mrows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell a story about a cat"}], "max_tokens": 20},
             {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 20}]
    rc, res, err, _ = batch(STORIES, mrows, ["--temp", "0"])
    if check(rc == 0 and res is not None, "messages batch exits 0 (%s)" % err.strip()[-200:]):
        g0 = generate(STORIES, "Tell a story about a cat", 20, ["--temp", "0", "--chat", "--system", "Be brief."])
        g1 = generate(STORIES, "Once upon a time", 20, ["--temp", "0", "--chat"])
        check(res[0]["text"] == g0["text"] and res[0]["prompt_tokens"] == len(g0["prompt_ids"]), "messages (llama2 format) equal generate --chat --system")
        check(res[1]["text"] == g1["text"], "messages equal generate --chat")
    synth = os.path.join(TMP, "batch_tiny_l3.gguf")
    rc, _, err = run(["synth", "--preset", "tiny", "--type", "f32", "-o", synth])
    if check(rc == 0, "synth tiny (%s)" % err.strip()[-200:]):
        rc, res, err, _ = batch(synth, mrows, ["--temp", "0"])
        if check(rc == 0 and res is not None, "messages on a Llama 3 model exit 0 (%s)" % err.strip()[-200:]):
            g0 = generate(synth, "Tell a story about a cat", 20, ["--temp", "0", "--chat", "--system", "Be brief."])
            check(res[0]["text"] == g0["text"] and res[0]["prompt_tokens"] == len(g0["prompt_ids"]), "messages (llama3 format) equal generate --chat")

    # a shared prefix is computed once
    long_p = " ".join(gold[:4])
    prow = [{"prompt": long_p + " " + q, "max_tokens": 8} for q in ("Then", "Mom said", "The end", "Tim")]
    rc, res, err, _ = batch(STORIES, prow, ["--temp", "0"])
    m = re.search(r"prompt (\d+) tok \((\d+) computed, (\d+) from the prefix cache\)", err)
    check(rc == 0 and m is not None and int(m.group(3)) >= 3 * 16, "shared prefix: tokens from the prefix cache (%s)" % (m and m.group(0)))

    # bad input: one error line with the line number, exit 1, no output file
    bad_cases = [
        ("malformed JSON", [{"prompt": "a"}, {"prompt": "b"}], '{"prompt": "c"\n', ":3:"),
        ("no prompt", [{"prompt": "a"}, {"max_tokens": 5}], None, ":2:"),
        ("prompt and messages", [{"prompt": "a", "messages": []}], None, ":1:"),
        ("prompt not a string", [{"prompt": 5}], None, ":1:"),
        ("bad max_tokens", [{"prompt": "a"}, {"prompt": "a", "max_tokens": "many"}], None, ":2:"),
        ("negative max_tokens", [{"prompt": "a", "max_tokens": -3}], None, ":1:"),
        ("bad temperature", [{"prompt": "a", "temperature": -1}], None, ":1:"),
        ("bad stop", [{"prompt": "a", "stop": [1, 2]}], None, ":1:"),
        ("empty stop", [{"prompt": "a", "stop": ""}], None, ":1:"),
        ("bad message", [{"messages": [{"role": "user"}]}], None, ":1:"),
        ("a JSON array line", [], "[1, 2]\n", ":1:"),
        ("prompt too long", [{"prompt": "a"}, {"prompt": "Once upon a time " * 100}], None, ":2:"),
        # each line is exactly one JSON object: nothing silently dropped, cut or picked
        ("two objects on one line", [{"prompt": "a"}], '{"prompt": "b"}{"prompt": "c"}\n', (":2:", "column 16")),
        ("trailing junk", [{"prompt": "a"}], '{"prompt": "c"} trailing junk\n', (":2:", "column 17")),
        ("a NUL byte between objects", [], '{"prompt": "a"}\0{"prompt": "b"}\n', (":1:", "NUL byte")),
        ("a NUL byte inside a string", [{"prompt": "a"}], '{"prompt": "a\0b"}\n', (":2:", "NUL byte")),
        ("a \\u0000 escape in a prompt", [], '{"prompt": "a\\u0000b"}\n', (":1:", "\\u0000")),
        ("duplicate keys", [{"prompt": "a"}], '{"prompt": "a", "max_tokens": 2, "max_tokens": 9}\n', (":2:", 'duplicate key "max_tokens"')),
        ("a string line", [], '"prompt"\n', (":1:", "JSON object")),
        ("nested too deep", [], '{"prompt": "a", "messages": ' + "[" * 65 + "]" * 65 + "}\n", (":1:", "nested deeper than 64")),
        # a field llamac does not know is refused, not run with the defaults
        ("a misspelt field", [{"prompt": "a"}, {"prompt": "b", "max_tokenz": 5}], None, (":2:", 'unknown field "max_tokenz"')),
        ("an unsupported field", [{"prompt": "a", "n": 2}], None, (":1:", 'unknown field "n"')),
        ("an extra message field", [{"messages": [{"role": "user", "content": "hi", "name": "x"}]}], None, (":1:", "nothing else")),
        # limits, named in the message
        ("65 stop strings", [{"prompt": "a", "stop": ["s%d" % i for i in range(65)]}], None, (":1:", "65 strings", "at most 64")),
        ("a stop string of 257 bytes", [{"prompt": "a", "stop": ["s", "x" * 257]}], None, (":1:", "256 bytes")),
        # 100,000 of them: refused by the count, not walked item by item (a linked list, once quadratic)
        ("100,000 stop strings", [{"prompt": "a", "stop": ["s%d" % i for i in range(100000)]}], None, (":1:", "100000 strings", "at most 64")),
        ("100,000 messages", [{"messages": [{"role": "user", "content": "hi"}] * 100000}], None, (":1:", "100000 messages", "256")),
    ]
    for name, rows_bad, raw, where in bad_cases:
        rc, res, err, out = batch(STORIES, rows_bad, ["--temp", "0", "--ctx", "256"], "bad.jsonl", raw, timeout=120)
        lines = [l for l in err.strip().splitlines() if l.startswith("llamac: error")]
        where = (where,) if isinstance(where, str) else where
        check(rc == 1 and len(lines) == 1 and all(w in lines[0] for w in where) and not os.path.exists(out)
              and not os.path.exists(out + ".tmp"), "%s: exit %d, one error line naming the line (%s)" % (name, rc, lines[:2]))
    # the most stop strings a request may give, and a messages array as long as the context allows: accepted
    rc, res, err, _ = batch(STORIES, [{"prompt": "Once", "max_tokens": 4, "stop": ["zq%d" % i for i in range(64)]},
                                      {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}] * 20
                                       + [{"role": "user", "content": "hi"}], "max_tokens": 2}], ["--temp", "0"], timeout=120)
    check(rc == 0 and res is not None and len(res) == 2, "64 stop strings and 41 messages are accepted (%s)" % err.strip()[-200:])
    empty = os.path.join(TMP, "batch_empty.jsonl")
    open(empty, "w").write("\n  \n")
    rc, _, err = run(["batch", "-m", STORIES, "--input", empty])
    check(rc == 1 and "error" in err, "an empty file is an error (%s)" % err.strip()[-100:])
    rc, _, err = run(["batch", "-m", STORIES, "--input", os.path.join(TMP, "no_such_file.jsonl")])
    check(rc == 1 and "no_such_file" in err, "an unreadable file is an error (%s)" % err.strip()[-100:])
    rc, _, err = run(["batch", "-m", STORIES, "--input", empty, "--kv-mem", "lots"])
    check(rc == 2, "a bad --kv-mem is a usage error")
    rc, _, err = run(["batch", "-m", STORIES, "--input", inp_path(rows), "--kv-mem", "100"])
    check(rc == 1 and "block" in err, "a KV budget below one block is an error (%s)" % err.strip()[-120:])

    # bench -b
    rc, out, err = run(["bench", "-m", STORIES, "-p", "32", "-n", "16", "-b", "1,4", "--reps", "2", "--threads", "2", "--json"])
    rows_b = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    if check(rc == 0 and len(rows_b) == 2, "bench -b 1,4 --json: two rows (%s)" % err.strip()[-200:]):
        check([r["batch"] for r in rows_b] == [1, 4], "batch sizes 1 and 4")
        b4 = rows_b[1]
        for k in ("prefill_tok_s", "decode_tok_s", "decode_gb_s", "hash", "kv_blocks", "kv_blocks_peak", "kv_waste", "preemptions"):
            check(k in b4, "batch row has %s" % k)
        check(b4.get("prefill_tok_s", 0) > 0 and b4.get("decode_tok_s", 0) > 0, "batched rates positive")
        check(0 <= b4.get("kv_waste", 9) < 1, "fragmentation below one block per sequence (%s)" % b4.get("kv_waste"))
        check(b4.get("preemptions") == 0, "no preemption in the bench")
        check(not b4.get("hash", "!").endswith("!"), "same tokens on every repetition")
        check(rows_b[0].get("kv_blocks") is None, "-b 1 (a session) has no KV block figures")

    print("batch: %d failed" % len(failures))
    return 1 if failures else 0


def inp_path(rows):
    p = os.path.join(TMP, "batch_ok.jsonl")
    write_jsonl(p, rows)
    return p


if __name__ == "__main__":
    sys.exit(main())
