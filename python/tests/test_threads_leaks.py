"""Python threads and object lifetimes: two threads generating at once give the same text as one; the GIL is
released while C computes; thousands of objects created and dropped leave the RSS flat."""
import gc
import os
import threading
import time

import pytest

import llamac
from conftest import GGUF, SANITIZE, assert_golden


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run_threads(fns):
    errors, results = [], [None] * len(fns)

    def wrap(i, f):
        try:
            results[i] = f()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=wrap, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    assert not errors, errors
    return results


def test_two_threads_two_models(gold):
    def job(k):
        def f():
            with llamac.Llama(model_path=GGUF, n_ctx=256, n_threads=1) as llm:
                return [llm(p, max_tokens=s, temperature=0)["choices"][0]["text"] for p, s, _ in gold[k::2]]
        return f
    a, b = run_threads([job(0), job(1)])
    for (prompt, _, want), text in zip(gold[0::2], a):
        assert_golden(prompt + text, want)
    for (prompt, _, want), text in zip(gold[1::2], b):
        assert_golden(prompt + text, want)


def test_two_threads_one_engine(gold):
    """Two threads submitting to one LLM: their requests share the engine's steps, each gets its own text."""
    with llamac.LLM(model=GGUF, max_num_seqs=8, max_model_len=256) as llm:
        sp = llamac.SamplingParams(temperature=0, max_tokens=200)
        a, b = run_threads([lambda: llm.generate([p for p, _, _ in gold[:3]], sp, use_tqdm=False),
                            lambda: llm.generate([p for p, _, _ in gold[3:]], sp, use_tqdm=False)])
        for o, (prompt, _, want) in zip(a + b, gold):
            assert_golden(prompt + o.outputs[0].text, want)


def test_two_sessions_one_model(gold):
    with llamac.Model(GGUF) as m:
        def job(prompt, steps):
            with llamac.Session(m, n_ctx=256, n_threads=1) as s:
                return prompt + "".join(s.stream(prompt, max_tokens=steps))
        texts = run_threads([lambda g=g: job(g[0], g[1]) for g in gold[:2]])
        for text, (_, _, want) in zip(texts, gold):
            assert_golden(text, want)


def test_gil_released_during_eval():
    """While one thread is inside a long C call, another Python thread keeps running. With the GIL held
    (ctypes.PyDLL) no Python code of any other thread runs between the call's start and end; the spinning
    thread's timestamps inside the call (away from its edges, more than a switch interval) prove it ran.
    The prompt doubles until the call lasts long enough to tell (a sanitizer build needs far fewer tokens)."""
    margin = 0.05
    with llamac.Model(GGUF) as m, llamac.Session(m, n_ctx=4096, n_threads=1) as s:
        stamps = []
        stop = threading.Event()

        def spin():
            last = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if now - last > 0.001:
                    stamps.append(now)
                    last = now
        t = threading.Thread(target=spin)
        t.start()
        try:
            n = 256
            while True:
                s.truncate(0)
                ids = [1] + [100 + i % 300 for i in range(n - 1)]
                time.sleep(0.02)
                t0 = time.monotonic()
                s.eval_all(ids)  # one C call: a prefill of n positions
                t1 = time.monotonic()
                if t1 - t0 > 6 * margin or 2 * n > 4096:
                    break
                n *= 2
        finally:
            stop.set()
            t.join()
        if t1 - t0 > 4 * margin:  # a machine so fast the call stays short proves nothing either way
            inside = [x for x in stamps if t0 + margin < x < t1 - margin]
            assert inside, "no Python thread ran during a %.2f s C call: the GIL was held" % (t1 - t0)


@pytest.mark.skipif(SANITIZE, reason="ASan keeps freed memory in quarantine, so RSS says nothing; LeakSanitizer "
                    "checks the C side in the C tests")
@pytest.mark.parametrize("kind", ["model", "session", "engine", "llama"])
def test_no_leak_in_create_free_loops(kind):
    n = 2000
    m = llamac.Model(GGUF)

    def once():
        if kind == "model":
            x = llamac.Model(GGUF)
            x.tokenizer.tokenize("hello")
        elif kind == "session":
            x = llamac.Session(m, n_ctx=32, n_threads=1)
            x.eval([1, 100, 200])
        elif kind == "engine":
            x = llamac.Engine(m, max_seqs=2, n_ctx=32, n_threads=1)
            x.run([dict(prompt_ids=[1, 100], max_tokens=3, sampling=llamac.sampler_params(temperature=0))])
        else:
            x = llamac.Llama(model_path=GGUF, n_ctx=32, n_threads=1)
            x("hi", max_tokens=2)
        if kind != "llama":
            del x  # garbage collection frees it
        else:
            x.close()
    for _ in range(n // 10):  # warm-up: allocator pools, import caches
        once()
    gc.collect()
    start = rss_kib()
    for _ in range(n):
        once()
    gc.collect()
    grown = rss_kib() - start
    # A leak of even one KV cache or thread pool per object would add megabytes over the loop.
    assert grown < 4096, "RSS grew by %d KiB over %d %s objects" % (grown, n, kind)
    m.close()
