#!/usr/bin/python3
"""A bounded load run on loopback against `llamac serve`: 160 concurrent keep-alive clients, 4
requests each (completions and chat, streamed and not, n up to 2, random lengths), from a small
load generator here (threads over http.client).

Checks: every request answered 200 with the usage it asked for; afterwards nothing runs or waits and
the KV pool is empty; the metrics' counters moved by exactly what the clients counted (requests by
finish reason, prompt and generated tokens, HTTP 200s); RSS after the run is within a bound of RSS
after a warm-up round as wide (no leak per request); the small KV budget makes the engine preempt. The amount of work is fixed; no timing is asserted.
"""

import http.client
import json
import os
import random
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import HANG, SHARED, Server  # noqa: E402

STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
CLIENTS, PER_CLIENT = 160, 4
WORDS = "once upon a time there was a little girl named lily she loved to play outside in the park with her dog".split()
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)
    return cond


def one_request(conn, rng):
    """Sends one random request on a keep-alive connection; returns (status, choices, usage)."""
    chat = rng.random() < 0.5
    stream = rng.random() < 0.5
    n = 2 if rng.random() < 0.2 else 1
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
    body = {"max_tokens": rng.randint(1, 40), "temperature": rng.choice([0, 0.8]), "seed": rng.randint(0, 1000), "n": n}
    if chat:
        body["messages"] = [{"role": "user", "content": words}]
    else:
        body["prompt"] = words
    if rng.random() < 0.3:
        body["stop"] = ["."]
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    conn.request("POST", "/v1/chat/completions" if chat else "/v1/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        return r.status, [], None
    if not stream:
        js = json.loads(data)
        return 200, [c["finish_reason"] for c in js["choices"]], js["usage"]
    finish, usage, done = {}, None, False
    for block in data.decode().split("\n\n"):
        if not block.startswith("data: "):
            continue
        payload = block[6:]
        if payload == "[DONE]":
            done = True
            continue
        js = json.loads(payload)
        for c in js["choices"]:
            if c["finish_reason"]:
                finish[c["index"]] = c["finish_reason"]
        usage = js.get("usage") or usage
    if not done or len(finish) != n:
        return -1, [], None
    return 200, [finish[i] for i in range(n)], usage


def load(port, clients, per_client, seed):
    results, errors = [], []
    lock = threading.Lock()

    def client(k):
        rng = random.Random(seed * 1000 + k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG)
        try:
            for _ in range(per_client):
                res = one_request(conn, rng)
                with lock:
                    (results if res[0] == 200 else errors).append(res)
        except Exception as e:  # a broken connection is an error of the run
            with lock:
                errors.append(repr(e))
        finally:
            conn.close()

    th = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in th:
        t.start()
    for t in th:
        t.join(HANG * 4)
    return results, errors


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    # a KV budget of ~800 positions for 32 sequences: preemption happens
    with Server(STORIES, "--max-seqs", "32", "--kv-mem", "1M") as srv:
        load(srv.port, CLIENTS, 1, 1)  # warm-up: as many connection threads, buffers and caches at their size
        srv.wait_idle()
        rss0 = rss_kb(srv.p.pid)
        m0 = srv.metrics()
        results, errors = load(srv.port, CLIENTS, PER_CLIENT, 2)
        check(not errors and len(results) == CLIENTS * PER_CLIENT,
              "%d requests from %d concurrent clients: all answered 200 (errors: %r)" % (len(results), CLIENTS, errors[:3]))
        m = srv.wait_idle()
        check(m.get("vllm:num_requests_running") == 0 and m.get("vllm:num_requests_waiting") == 0, "afterwards nothing runs or waits")
        check(m.get("llamac:kv_cache_blocks_used") == 0 and m.get("vllm:kv_cache_usage_perc") == 0, "afterwards the KV pool is empty")

        def delta(key):
            return m.get(key, 0) - m0.get(key, 0)
        finishes = [f for _, fs, _ in results for f in fs]
        for reason in ("stop", "length"):
            check(delta("vllm:request_success_total|finished_reason=" + reason) == finishes.count(reason),
                  "request_success_total{%s} moved by the clients' count (%d)" % (reason, finishes.count(reason)))
        check(delta("vllm:request_success_total|finished_reason=abort") == 0, "no request aborted")
        gen = sum(u["completion_tokens"] for _, _, u in results)
        check(delta("vllm:generation_tokens_total") == gen, "generation_tokens_total moved by the clients' completion_tokens (%d)" % gen)
        # usage counts a prompt once per request; the engine counts it once per choice
        prompt = sum(u["prompt_tokens"] * len(fs) for _, fs, u in results)
        check(delta("vllm:prompt_tokens_total") == prompt, "prompt_tokens_total moved by the clients' prompt tokens (%d)" % prompt)
        check(delta("llamac:http_requests_total|status=200") == len(results) + 1,  # + the metrics request in between
              "HTTP 200 count moved by the requests answered")
        check(delta("vllm:e2e_request_latency_seconds_count") == len(finishes), "one e2e latency observation per choice")
        rss1 = rss_kb(srv.p.pid)
        if not os.environ.get("LLAMAC_SANITIZE"):  # ASan's quarantine holds freed memory on purpose
            check(rss1 - rss0 < 16 * 1024, "RSS after the run within 16 MiB of after the warm-up (%d -> %d KiB)" % (rss0, rss1))
        print("load: %d requests, %d choices, %d tokens generated, %d preemptions; RSS %d -> %d KiB" %
              (len(results), len(finishes), gen, delta("vllm:num_preemptions_total"), rss0, rss1))
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
