#!/usr/bin/python3
"""Slow but legitimate requests stay bounded by the context (issue 9, item 8).

1. `llamac logits --ids` with more ids than the context (default: the model's, at most 4096) is an error
   naming both numbers, before any evaluation; `--ctx` raises the limit. `perplexity` refuses a window
   longer than the model's training context.
2. `llamac chat` with a small context and many turns, on a synthetic Llama 3 model (random weights; the
   bookkeeping is what is tested), with `--verbose` (the ids each turn evaluated): every turn answers;
   when a turn does not fit, whole old turns go (oldest first, the system message stays) with a notice,
   down to half the context, so the next turns evaluate only their own new tokens; after every turn the
   KV cache holds exactly the Hugging Face chat_template (rendered by jinja2) of the kept messages, the
   answers being the sampled ids; an eviction re-evaluates only from the first position that changed;
   a message that cannot fit even alone is an error for that turn and the chat goes on.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_chat as tc  # noqa: E402  (its helpers: run, ref_ids/ref_prefetch, render_llama3, stats)
from test_chat import check, fail, run  # noqa: E402

STORIES = tc.STORIES
IDS_LINE = re.compile(r"\[ids\] prefill at (\d+):([\d ]*) \| answer:([\d ]*)$")
DROPPED = re.compile(r"dropped the oldest (\d+) turns?")
SENTINEL = "<|reserved_special_token_7|>"  # stands for an answer's ids in the rendering


def test_logits_bound():
    ids = ",".join(["1"] * 20000)
    t = time.time()
    rc, out, err = run(["logits", "-m", STORIES, "--ids", ids, "--top", "1", "-t", "1"], timeout=120)
    check(rc == 1 and out == "" and "20000" in err and "2048" in err and err.startswith("llamac: error: "),
          "logits: 20000 ids over a 2048 context should be an error naming both: exit %d %r" % (rc, err))
    print("logits 20000 ids refused in %.2f s" % (time.time() - t))
    rc, out, err = run(["logits", "-m", STORIES, "--ids", ",".join(["1"] * 20), "--ctx", "16", "--top", "1"])
    check(rc == 1 and "20" in err and "16" in err, "logits: --ctx 16 with 20 ids should be an error: %d %r" % (rc, err))
    rc, out, err = run(["logits", "-m", STORIES, "--ids", ",".join(["1"] * 2100), "--ctx", "2100", "--top", "1", "-t", "1"])
    check(rc == 1 and "2100" in err and "2048" in err, "logits: --ctx over the model's context (2048) should be an error: %d %r" % (rc, err))
    rc, out, err = run(["logits", "-m", STORIES, "-p", "Once upon a time", "--top", "1"])
    check(rc == 0, "logits: a short prompt should work: %r" % err)
    text = os.path.join(tc.SHARED, "testdata", "text", "tinystory.txt")
    rc, out, err = run(["perplexity", "-m", STORIES, "-f", text, "--ctx", "4096"])
    check(rc == 1 and "4096" in err and "2048" in err,
          "perplexity: a window over the model's context (2048) should be an error: %d %r" % (rc, err))


def prefetch(texts):
    """test_chat.ref_prefetch through a file: these renderings are too long together for one argument."""
    import json
    texts = list(dict.fromkeys(texts))
    path = os.path.join(tc.TMP, "bounds-renders.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(tc.SEP_TEXT + tc.SEP_TEXT.join(texts))
    rc, out, err = run(["tokenize", "--tokenizer", tc.L3_JSON, "--no-bos", "--special", "--json", "--file", path])
    os.remove(path)
    if rc != 0:
        raise RuntimeError("tokenize failed: " + err)
    parts = []
    for t in json.loads(out):
        if t == tc.SEP_ID:
            parts.append([])
        else:
            parts[-1].append(t)
    assert len(parts) == len(texts)
    tc._ref_cache.update(zip(texts, parts))


def test_logits_raise_ctx(model):
    """The synthetic Llama 3 model has a context of 131072: the default limit (4096) refuses 4100 ids,
    --ctx 4100 accepts them."""
    ids = ",".join(["1"] * 4100)
    rc, out, err = run(["logits", "-m", model, "--ids", ids, "--top", "1", "-t", "2"])
    check(rc == 1 and "4100" in err and "4096" in err and "131072" in err,
          "logits: 4100 ids over the default context 4096 should be an error: %d %r" % (rc, err))
    if os.environ.get("LLAMAC_SANITIZE", "") not in ("", "0", "OFF", "off"):
        return  # 4100 positions through a Debug sanitizer build take minutes; the refusals are what it is for
    rc, out, err = run(["logits", "-m", model, "--ids", ids, "--top", "1", "-t", "2", "--ctx", "4100"], timeout=300)
    check(rc == 0 and out.count(", ") >= 4099, "logits: --ctx 4100 should accept 4100 ids: %d %r" % (rc, err))


def parse_chat(err):
    """Per answered turn: (dropped turns, prefill start, prefilled ids, answer ids, stats); and error lines."""
    turns, dropped, errors = [], 0, []
    for line in err.splitlines():
        m = DROPPED.search(line)
        if m:
            dropped = int(m.group(1))
            continue
        if line.startswith("llamac: error: "):
            errors.append((len(turns), line))
            continue
        st = tc.stats(line)
        if st:
            turns.append([dropped, None, None, None, st[0]])
            dropped = 0
            continue
        m = IDS_LINE.search(line)
        if m:
            turns[-1][1:4] = int(m.group(1)), [int(x) for x in m.group(2).split()], [int(x) for x in m.group(3).split()]
    return turns, errors


def test_chat_eviction(model):
    try:
        import jinja2  # noqa: F401
    except ImportError:
        fail("python3-jinja2 is needed for the Llama 3 chat template reference")
        return
    import json
    with open(os.path.join(tc.L3, "tokenizer_config.json"), encoding="utf-8") as f:
        tpl = json.load(f)["chat_template"]
    ctx, n_predict = 192, 6
    sysmsg = "You are a terse assistant."
    msgs = ["Tell me fact number %d about the sea and its waves" % i for i in range(16)]
    long_at = 9  # this message cannot fit even alone: an error, and the chat goes on
    lines = msgs[:long_at] + [" ".join("w%d" % i for i in range(400))] + msgs[long_at:]
    rc, out, err = run(["chat", "-m", model, "--system", sysmsg, "-n", str(n_predict), "--temp", "0", "--ctx", str(ctx),
                        "-t", "1", "--verbose"], input=("\n".join(lines) + "\n").encode(), timeout=300)
    turns, errors = parse_chat(err)
    if not check(rc == 0 and len(turns) == len(msgs) and all(t[1] is not None for t in turns),
                 "chat eviction: exit %d, %d of %d turns answered: %s" % (rc, len(turns), len(msgs), err[-2000:])):
        return
    check(len(errors) == 1 and errors[0][0] == long_at and "skipped" in errors[0][1] and str(ctx) in errors[0][1],
          "chat eviction: the over-long message should be one error line naming the context: %s" % errors)

    def conv(kept, user):
        m = [{"role": "system", "content": sysmsg}]
        for u, _ in kept:
            m += [{"role": "user", "content": u}, {"role": "assistant", "content": SENTINEL}]
        return tc.render_llama3(tpl, m + [{"role": "user", "content": user}])

    # every rendering the walk may need, tokenized in one call: kept suffixes of the conversation so far
    renders = [conv([(u, None) for u in msgs[j:i]], msgs[i]) for i in range(len(msgs)) for j in range(i + 1)]
    prefetch(renders + [SENTINEL])
    sentinel_id, = tc.ref_ids(SENTINEL)

    def expected(kept, user):
        """The rendering's ids, each sentinel replaced by its answer's sampled ids."""
        res, k = [], 0
        for t in tc.ref_ids(conv(kept, user)):
            if t == sentinel_id:
                res += kept[k][1]
                k += 1
            else:
                res.append(t)
        return res

    kept, kv, evictions = [], [], []
    for i, (dropped, start, prefill, answer, (n_pre, n_ans, reason, c, cx)) in enumerate(turns):
        user = msgs[i]
        if dropped:
            evictions.append(i)
            # policy, checked from the renderings: the fewest oldest turns so that the rest fits in half the context
            before = kept
            kept = kept[dropped:]
            n_keep = len(expected(kept, user))
            n_more = len(expected(before[dropped - 1:], user))
            check(n_keep + n_predict <= ctx and n_keep <= ctx // 2,
                  "turn %d: after dropping %d turns the prompt (%d ids) should fit in half the context" % (i, dropped, n_keep))
            check(n_more + n_predict > ctx or n_more > ctx // 2,
                  "turn %d: %d turns dropped, one fewer (%d ids) would have fit" % (i, dropped, n_more))
        want = expected(kept, user)
        check(start <= len(kv) and n_pre == len(prefill), "turn %d: prefill from %d, cache holds %d" % (i, start, len(kv)))
        got = kv[:start] + prefill
        check(got == want, "turn %d: the KV cache differs from the chat_template rendering of the kept messages\n got  %s\n want %s"
              % (i, got, want))
        lcp = 0
        while lcp < min(len(kv), len(want)) and kv[lcp] == want[lcp]:
            lcp += 1
        check(start == min(lcp, len(want) - 1),
              "turn %d: evaluation should start at the first changed position %d, not %d" % (i, lcp, start))
        if not dropped and i > 0:
            check(start == len(kv), "turn %d: %d ids re-evaluated without an eviction" % (i, len(kv) - start))
        check(len(answer) == n_ans and 1 <= n_ans <= n_predict or reason == "end",
              "turn %d: answer %d ids (%s)" % (i, n_ans, reason))
        check(c <= ctx and c in (len(got) + n_ans, len(got) + n_ans - 1), "turn %d: context %d after %d + %d" % (i, c, len(got), n_ans))
        kv = (got + answer)[:c]
        kept.append((user, answer))
    print("chat eviction: %d turns, evictions before turns %s, prefill per turn %s" % (len(turns), evictions, [t[4][0] for t in turns]))
    check(len(evictions) >= 2, "chat eviction: the test should evict at least twice: %s" % evictions)
    # after an eviction there is room for several turns: each is followed by at least two that evaluate only their own ids
    gaps = [b - a for a, b in zip(evictions, evictions[1:])]
    check(all(g >= 3 for g in gaps), "chat eviction: evictions too close together %s (every turn re-evaluating)" % evictions)


def main():
    t0 = time.time()
    os.makedirs(tc.TMP, exist_ok=True)
    test_logits_bound()
    model = os.path.join(tc.TMP, "bounds-tiny.gguf")
    rc, _, err = run(["synth", "--preset", "tiny", "--type", "f32", "-o", model])
    if check(rc == 0, "synth: " + err):
        t = time.time()
        test_logits_raise_ctx(model)
        print("logits --ctx %.1f s" % (time.time() - t))
        t = time.time()
        test_chat_eviction(model)
        print("chat eviction %.1f s" % (time.time() - t))
        os.remove(model)
    print("test_bounds: %d failure(s), %.1f s" % (len(tc.failures), time.time() - t0))
    sys.exit(1 if tc.failures else 0)


if __name__ == "__main__":
    main()
