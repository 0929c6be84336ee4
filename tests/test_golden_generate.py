#!/usr/bin/python3
"""Greedy generation reproduces llama2.c's published output.

For every line of shared/testdata/golden/stories260K-greedy.jsonl (text = what
llama2.c's run.c printed: prompt + greedy continuation, 200 tokens, then "\\n"):

  * `llamac generate -m stories260K.gguf -p PROMPT -n 256 --temp 0` and the same
    from the llama2.c checkpoint `stories260K.bin --tokenizer tok512.bin`:
    stdout starts with text[:-1] (stats go to stderr, not stdout);
  * with --json: one JSON object with prompt_ids, ids, text, timings;
    PROMPT + text starts with text[:-1]; prompt_ids are sentencepiece's
    tokenization of PROMPT with BOS; the ids, decoded by sentencepiece
    (independently of llamac's decoder), also start with text[:-1].
"""

import json
import os
import subprocess
import sys
import time

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..", "..", "shared"))
D = os.path.join(SHARED, "models", "stories260K")
MODELS = [
    ("gguf", ["-m", os.path.join(D, "stories260K.gguf")]),
    ("bin", ["-m", os.path.join(D, "stories260K.bin"), "--tokenizer", os.path.join(D, "tok512.bin")]),
]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def first_diff(got, want):
    i = 0
    while i < min(len(got), len(want)) and got[i] == want[i]:
        i += 1
    return "first difference at char %d: got %r, want %r" % (i, got[max(0, i - 30):i + 30],
                                                             want[max(0, i - 30):i + 30])


def generate(model_args, prompt, json_mode):
    args = [LLAMAC, "generate"] + model_args + ["-p", prompt, "-n", "256", "--temp", "0"]
    if json_mode:
        args.append("--json")
    p = subprocess.run(args, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace")[-400:]))
    return p.stdout.decode("utf-8", errors="replace")


def main():
    t0 = time.time()
    try:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(D, "tok512.model"))
    except Exception as e:  # noqa: BLE001
        print("FAIL: sentencepiece / tok512.model: %s" % e)
        return 1
    gold = [json.loads(l) for l in open(os.path.join(SHARED, "testdata", "golden",
                                                     "stories260K-greedy.jsonl"))]
    n_ok = 0
    n_runs = 0
    for g in gold:
        prompt = g["prompt"]
        want = g["text"][:-1] if g["text"].endswith("\n") else g["text"]
        for name, margs in MODELS:
            tag = "%s %r" % (name, prompt)
            # streaming text mode
            n_runs += 1
            try:
                out = generate(margs, prompt, False)
                if not out.startswith(want):
                    fail("%s: stdout does not start with the golden text; %s"
                         % (tag, first_diff(out, want)))
                elif "tok/s" in out:
                    fail("%s: timing stats on stdout (they belong on stderr)" % tag)
                else:
                    n_ok += 1
            except Exception as e:  # noqa: BLE001
                fail("%s: %s" % (tag, e))
            # --json mode
            n_runs += 1
            try:
                out = generate(margs, prompt, True).strip()
                try:
                    o = json.loads(out)
                except ValueError:
                    fail("%s --json: stdout is not one JSON object: %r" % (tag, out[:200]))
                    continue
                missing = [k for k in ("prompt_ids", "ids", "text", "timings") if k not in o]
                if missing:
                    fail("%s --json: missing %s" % (tag, missing))
                    continue
                full = prompt + o["text"]
                want_ids = [1] + sp.encode(prompt)
                by_sp = sp.decode(list(o["prompt_ids"][1:]) + list(o["ids"]))
                if not full.startswith(want):
                    fail("%s --json: prompt + text does not start with the golden text; %s"
                         % (tag, first_diff(full, want)))
                elif o["prompt_ids"] != want_ids:
                    fail("%s --json: prompt_ids %s, sentencepiece+BOS gives %s"
                         % (tag, o["prompt_ids"], want_ids))
                elif not by_sp.startswith(want):
                    fail("%s --json: ids decoded by sentencepiece do not start with the golden "
                         "text; %s" % (tag, first_diff(by_sp, want)))
                elif len(o["prompt_ids"]) - 1 + len(o["ids"]) < g["steps"]:
                    fail("%s --json: only %d tokens generated" % (tag, len(o["ids"])))
                else:
                    n_ok += 1
            except Exception as e:  # noqa: BLE001
                fail("%s --json: %s" % (tag, e))
    print("golden greedy generation: %d/%d runs reproduce llama2.c's text (%d prompts x "
          "{gguf, bin} x {text, --json}), %.1f s" % (n_ok, n_runs, len(gold), time.time() - t0))
    print("%s: %d failure(s)" % ("FAILED" if failures else "OK", len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
