#!/usr/bin/python3
"""`llamac serve` over raw HTTP (http.client and sockets), on loopback ports the server picks.

* exactness: greedy completions through the server equal `llamac generate` (text, token count, finish
  reason) and continue the prompt as llama2.c's run.c did (the golden file), one at a time, streamed,
  and with 32 different requests in flight at once; chat through a synthetic Llama 3 model equals
  `llamac generate --chat`;
* sampling: the same seed gives the same choices, n > 1 gives n choices, stop strings end the text;
* what clients never send: malformed JSON, trailing data, duplicate keys, NUL, wrong types and
  ranges, unknown or unsupported parameters, wrong content types, oversized bodies (413), unknown
  routes (404), wrong methods (405), header floods, half-closed and idle connections: the right
  status in OpenAI's error shape, and the server keeps serving;
* robustness: a client leaving mid-stream cancels its request (metrics: nothing running, no KV in
  use), a full queue answers 429 with Retry-After, an API key is required (401), SIGTERM lets a
  running stream finish and exits 0, SIGTERM with --timeout 0 cancels and exits 0, a stream queued
  behind another gets `: keep-alive` comments before its first event.
"""

import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import HANG, LLAMAC, SHARED, Server  # noqa: E402

import subprocess  # noqa: E402

TMP = os.environ.get("LLAMAC_TMP") or tempfile.gettempdir()
os.makedirs(TMP, exist_ok=True)
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
GOLDEN = os.path.join(SHARED, "testdata", "golden", "stories260K-greedy.jsonl")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)
    return cond


def generate(model, prompt, n, extra=()):
    p = subprocess.run([LLAMAC, "generate", "-m", model, "-p", prompt, "-n", str(n), "--json", "--threads", "2", "--temp", "0"] +
                       list(extra), capture_output=True, timeout=HANG)
    if p.returncode != 0:
        raise RuntimeError("generate: " + p.stderr.decode()[-300:])
    return json.loads(p.stdout)


def is_error(js, status, got_status, param=None):
    ok = (got_status == status and isinstance(js, dict) and isinstance(js.get("error"), dict) and
          set(js["error"]) == {"message", "type", "param", "code"} and isinstance(js["error"]["message"], str))
    if ok and param is not None:
        ok = js["error"]["param"] == param
    return ok


def sse_events(data):
    """The data: payloads of an SSE body, comments dropped."""
    out = []
    for block in data.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def stream_text(srv, body):
    status, _, data = srv.request("POST", "/v1/completions", dict(body, stream=True, stream_options={"include_usage": True}))
    ev = sse_events(data)
    text, finish, usage = "", None, None
    for e in ev[:-1]:
        js = json.loads(e)
        for ch in js["choices"]:
            text += ch["text"]
            finish = ch["finish_reason"] or finish
        usage = js.get("usage") or usage
    return status, text, finish, usage, ev[-1] if ev else None


def test_exactness(srv):
    golden = [json.loads(l) for l in open(GOLDEN) if l.strip()]
    prompts = [g["prompt"] for g in golden]
    n = 60
    ref = {p: generate(STORIES, p, n) for p in prompts}
    for g in golden:
        p = g["prompt"]
        status, js, _ = srv.post("/v1/completions", {"prompt": p, "max_tokens": n, "temperature": 0})
        ok = status == 200 and js["choices"][0]["text"] == ref[p]["text"]
        ok = ok and js["usage"]["completion_tokens"] == len(ref[p]["ids"]) and js["usage"]["prompt_tokens"] == len(ref[p]["prompt_ids"])
        ok = ok and js["choices"][0]["finish_reason"] == ref[p]["finish_reason"]
        check(ok, "greedy %r through the server equals llamac generate (%d tokens)" % (p, len(ref[p]["ids"])))
        check(status == 200 and g["text"].startswith(p + js["choices"][0]["text"]),
              "greedy %r continues as llama2.c's run.c (golden)" % p)
        st, text, finish, usage, last = stream_text(srv, {"prompt": p, "max_tokens": n, "temperature": 0})
        check(st == 200 and text == ref[p]["text"] and finish == ref[p]["finish_reason"] and last == "[DONE]" and
              usage and usage["completion_tokens"] == len(ref[p]["ids"]), "streamed %r equals llamac generate" % p)
    # 32 different requests at once
    many = ["%s %s" % (prompts[i % len(prompts)], w) for i, w in enumerate(
        ["and", "the", "a", "big", "little", "happy", "sad", "red", "blue", "cat", "dog", "bird", "tree", "ball", "sun", "moon",
         "boat", "car", "girl", "boy", "mom", "dad", "friend", "park", "house", "box", "toy", "cake", "fish", "rain", "snow", "star"])]
    refs = {p: generate(STORIES, p, 40) for p in many}
    results = {}
    barrier = threading.Barrier(len(many))

    def one(p, stream):
        barrier.wait(HANG)
        if stream:
            st, text, finish, usage, _ = stream_text(srv, {"prompt": p, "max_tokens": 40, "temperature": 0})
            results[p] = (st, text, usage["completion_tokens"] if usage else -1)
        else:
            st, js, _ = srv.post("/v1/completions", {"prompt": p, "max_tokens": 40, "temperature": 0})
            results[p] = (st, js["choices"][0]["text"] if st == 200 else None, js["usage"]["completion_tokens"] if st == 200 else -1)

    th = [threading.Thread(target=one, args=(p, i % 2 == 1)) for i, p in enumerate(many)]
    for t in th:
        t.start()
    for t in th:
        t.join(HANG)
    bad = [p for p in many if results.get(p) != (200, refs[p]["text"], len(refs[p]["ids"]))]
    check(not bad, "32 requests in flight at once (half streamed) equal llamac generate (%d differ: %r)" % (len(bad), bad[:2]))
    m = srv.wait_idle()
    check(m.get("llamac:kv_cache_blocks_used") == 0, "after them: no KV block in use")


def test_sampling(srv):
    body = {"prompt": "Once upon a time", "max_tokens": 30, "temperature": 1.0, "seed": 1234, "n": 3}
    s1, a, _ = srv.post("/v1/completions", body)
    s2, b, _ = srv.post("/v1/completions", body)
    check(s1 == 200 and s2 == 200 and len(a["choices"]) == 3 and [c["index"] for c in a["choices"]] == [0, 1, 2],
          "n=3 gives three choices, indexed 0..2")
    check(s1 == 200 and s2 == 200 and [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]],
          "the same seed gives the same choices")
    check(s1 == 200 and a["usage"]["prompt_tokens"] == 5 and a["usage"]["completion_tokens"] == 90,
          "usage counts the prompt once and every choice's tokens")
    ref = generate(STORIES, "Once upon a time", 60)
    text = ref["text"]
    stop = text[20:26]
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stop": [stop, "zzz"]})
    check(st == 200 and js["choices"][0]["text"] == text[:text.index(stop)] and js["choices"][0]["finish_reason"] == "stop",
          "a stop string ends the text before it, finish_reason stop")
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "echo": True})
    check(st == 200 and js["choices"][0]["text"].startswith("Once upon a time,"), "echo puts the prompt before the completion")
    # the same long prompt twice: the second is served from the prefix cache
    long_p = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    srv.post("/v1/completions", {"prompt": long_p, "max_tokens": 2, "temperature": 0})
    st, js, _ = srv.post("/v1/completions", {"prompt": long_p, "max_tokens": 2, "temperature": 0})
    check(st == 200 and js["usage"]["prompt_tokens_details"]["cached_tokens"] >= 16,
          "a repeated prompt reports cached_tokens (%s)" % (js or {}).get("usage"))
    st, js, _ = srv.post("/tokenize", {"prompt": "Once upon a time"})
    check(st == 200 and js["tokens"] == ref["prompt_ids"] and js["count"] == len(ref["prompt_ids"]), "/tokenize equals generate's prompt ids")
    st, js, _ = srv.post("/detokenize", {"tokens": ref["ids"]})
    check(st == 200 and js["prompt"] == text.lstrip(" ") or js["prompt"] == text, "/detokenize gives the text back")
    st, js, _ = srv.post("/v1/completions", {"prompt": ref["prompt_ids"], "max_tokens": 60, "temperature": 0})
    check(st == 200 and js["choices"][0]["text"] == text, "a prompt of token ids equals the same prompt as text")
    # logprobs: the tokens are generate's ids one by one, the greedy one is the most likely
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "logprobs": 3})
    def detok(ids):
        return srv.post("/detokenize", {"tokens": ids})[1]["prompt"]

    def piece(before, i):  # the text token i adds after the ids before (SentencePiece drops a leading space at the start)
        return detok(before + [i])[len(detok(before)):]

    pieces = [piece(ref["prompt_ids"] + ref["ids"][:k], i) for k, i in enumerate(ref["ids"])]
    lp = js["choices"][0]["logprobs"] if st == 200 else {}
    check(st == 200 and lp["tokens"] == pieces and "".join(lp["tokens"]) == text, "logprobs' tokens are llamac generate's, token for token")
    check(st == 200 and all(len(t) == 3 and max(t.values()) == l for t, l in zip(lp["top_logprobs"], lp["token_logprobs"])) and
          all(l <= 0 for l in lp["token_logprobs"]), "greedy tokens are the most likely of their top 3, logprobs <= 0")
    # logit_bias and penalties change the greedy answer as their definitions say
    first = ref["ids"][0]
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 1, "temperature": 0, "logit_bias": {str(first): -100},
                                             "logprobs": 2})
    check(st == 200 and js["choices"][0]["logprobs"]["tokens"][0] != pieces[0], "logit_bias -100 on the greedy token: another one")
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "logit_bias": {"300": 100},
                                             "ignore_eos": True})
    p300 = piece(ref["prompt_ids"], 300)
    check(st == 200 and js["choices"][0]["text"] == p300 * 4, "logit_bias +100 forces a token")
    st, js, _ = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "frequency_penalty": 2,
                                             "presence_penalty": 2, "logprobs": 0})
    toks = js["choices"][0]["logprobs"]["tokens"] if st == 200 else []
    check(st == 200 and toks[0] == pieces[0] and js["choices"][0]["text"] != text, "penalties leave the first token, change the rest")
    st, js, _ = srv.post("/v1/completions", {"prompt": ["Once upon a time", "The little dog"], "max_tokens": 5, "temperature": 0})
    check(st == 200 and len(js["choices"]) == 2 and js["choices"][0]["text"] == generate(STORIES, "Once upon a time", 5)["text"] and
          js["choices"][1]["text"] == generate(STORIES, "The little dog", 5)["text"], "an array of prompts gives one choice each")


def test_errors(srv):
    C = "/v1/completions"
    cases = [
        (b"{", 400, None, "malformed JSON"),
        (b'{"prompt": "x"} {}', 400, None, "two JSON values"),
        (b'{"prompt": "x"} junk', 400, None, "trailing junk"),
        (b'{"prompt": "x", "prompt": "y"}', 400, None, "a duplicate key"),
        (b'{"prompt": "x\x00"}', 400, None, "a NUL byte"),
        (b'{"prompt": "x\\u0000y"}', 400, None, "a \\u0000 escape"),
        (b'["x"]', 400, None, "an array body"),
        (b'', 400, None, "an empty body"),
        (b'"x"', 400, None, "a string body"),
    ]
    for body, status, param, what in cases:
        st, h, data = srv.request("POST", C, body, {"Content-Type": "application/json"})
        try:
            js = json.loads(data)
        except ValueError:
            js = None
        check(is_error(js, status, st, param), "%s: %d in OpenAI's error shape (got %d %r)" % (what, status, st, data[:120]))
    bad = [
        ({"prompt": 5}, "prompt"), ({"prompt": []}, "prompt"), ({"prompt": [1, "a"]}, "prompt"), ({"prompt": [99999]}, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"), ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
        ({"prompt": "x", "max_tokens": "5"}, "max_tokens"), ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"), ({"prompt": "x", "top_p": 0}, "top_p"), ({"prompt": "x", "top_p": 1.5}, "top_p"),
        ({"prompt": "x", "top_k": -2}, "top_k"), ({"prompt": "x", "min_p": 2}, "min_p"), ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 1000}, "n"), ({"prompt": "x", "stop": 5}, "stop"), ({"prompt": "x", "stop": [""]}, "stop"),
        ({"prompt": "x", "stop": ["a"] * 65}, "stop"), ({"prompt": "x", "stop": ["a" * 257]}, "stop"), ({"prompt": "x", "seed": 1.5}, "seed"), ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": "x", "frobnicate": 1}, "frobnicate"), ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "presence_penalty": 3}, "presence_penalty"), ({"prompt": "x", "frequency_penalty": "a"}, "frequency_penalty"),
        ({"prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias"), ({"prompt": "x", "logit_bias": {"1": 200}}, "logit_bias"),
        ({"prompt": "x", "logit_bias": {"99999": 1}}, "logit_bias"), ({"prompt": "x", "logit_bias": [1]}, "logit_bias"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"), ({"prompt": "x", "logprobs": True}, "logprobs"),
        ({"prompt": "x", "logprobs": 1, "echo": True}, "echo"),
        ({"prompt": "x", "max_tokens": 100000}, "prompt"), ({"prompt": "x " * 3000}, "prompt"),
        ({"prompt": "x", "model": 5}, "model"),
    ]
    for body, param in bad:
        st, js, _ = srv.post(C, body)
        check(is_error(js, 400, st, param), "400 naming %r for %s (got %d %s)" % (param, json.dumps(body)[:60], st, js))
    st, js, _ = srv.post(C, {"prompt": "x", "max_tokens": 100000})
    check(st == 400 and "2048" in js["error"]["message"] and "100000" in js["error"]["message"], "the context error gives the numbers")
    st, js, _ = srv.post(C, {"prompt": "x", "model": "gpt-4"})
    check(is_error(js, 404, st, "model"), "an unknown model: 404")
    CH = "/v1/chat/completions"
    for body, what in [({"messages": []}, "empty messages"), ({"messages": [{"role": "wizard", "content": "x"}]}, "an unknown role"),
                       ({"messages": [{"role": "user"}]}, "no content"), ({"messages": [{"role": "user", "content": 5}]}, "content a number"),
                       ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "an image part"),
                       ({"messages": "hi"}, "messages a string"), ({}, "no messages"),
                       ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
                       ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "a message name"),
                       ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs without logprobs"),
                       ({"messages": [{"role": "user", "content": "x"}], "logprobs": 1}, "logprobs not a boolean")]:
        st, js, _ = srv.post(CH, body)
        check(is_error(js, 400, st), "chat, %s: 400 (got %d)" % (what, st))
    st, js, _ = srv.post(CH, {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 3})
    check(st == 200 and js["object"] == "chat.completion", "chat content as text parts is accepted")
    # An error message or param cut to its size must not cut a UTF-8 character (JSON's encoding) in two:
    # the model name is quoted in a message of 700 bytes, an unknown key in a param of 96, a logit_bias
    # key in 40 bytes; the ASCII bytes before the two-byte characters put each cut mid-character.
    for body, status, param in [({"prompt": "x", "model": "a" + "\u00e9" * 400}, 404, "model"),
                                ({"prompt": "x", "ab" + "\u00e9" * 60: 1}, 400, None),
                                ({"prompt": "x", "logit_bias": {"a" + "\u00e9" * 30: 1}}, 400, "logit_bias")]:
        data = json.dumps(body, ensure_ascii=False).encode()
        out = srv.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        head, _, answer = out.partition(b"\r\n\r\n")
        try:
            js = json.loads(answer.decode("utf-8"))
        except ValueError:
            js = None
        got = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
        want = param if param else "ab" + "\u00e9" * 46
        check(is_error(js, status, got, want), "a cut message or param stays UTF-8: %d naming %r (got %d %r)" %
              (status, want[:8], got, answer[-60:]))
    # content types, routes, methods
    st, h, data = srv.request("POST", C, b'{"prompt":"x"}', {"Content-Type": "text/plain"})
    check(is_error(json.loads(data), 415, st), "text/plain body: 415")
    st, h, data = srv.request("POST", C, b'prompt=x', {"Content-Type": "application/x-www-form-urlencoded"})
    check(is_error(json.loads(data), 415, st), "a form body: 415")
    st, h, data = srv.request("POST", C, b'{"prompt":"x","max_tokens":2}', {"Content-Type": "application/json; charset=utf-8"})
    check(st == 200, "application/json; charset=utf-8 is accepted")
    st, h, data = srv.request("GET", "/v2/nothing")
    check(is_error(json.loads(data), 404, st), "an unknown route: 404")
    st, h, data = srv.request("GET", C)
    check(is_error(json.loads(data), 405, st) and h.get("allow") == "POST", "GET on a POST route: 405 with Allow")
    st, h, data = srv.request("POST", "/v1/models", b"{}")
    check(st == 405, "POST /v1/models: 405")
    st, h, data = srv.request("GET", "/v1/models/nope")
    check(st == 404, "an unknown model id: 404")
    st, h, data = srv.request("GET", "/v1/models/stories260K")
    check(st == 200 and json.loads(data)["id"] == "stories260K", "GET /v1/models/{id}")
    st, h, data = srv.request("GET", "/v1/models")
    check(st == 200 and json.loads(data)["data"][0]["id"] == "stories260K", "GET /v1/models")
    # oversized bodies (--max-body 64K)
    big = json.dumps({"prompt": "x" * 70000}).encode()
    st, h, data = srv.request("POST", C, big, {"Content-Type": "application/json"})
    check(is_error(json.loads(data), 413, st), "a body over --max-body: 413")
    out = srv.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  b"".join(b"%x\r\n%s\r\n" % (8192, b"x" * 8192) for _ in range(12)) + b"0\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413") or out == b"", "a chunked body over --max-body: 413 or closed (%r)" % out[:40])
    # header flood
    flood = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(2000)) + b"\r\n"
    try:
        out = srv.raw(flood)
    except (BrokenPipeError, ConnectionResetError):
        out = b""
    check(not out.startswith(b"HTTP/1.1 200"), "a header flood is refused (%r)" % out[:30])
    # half-closed connections: a partial request, then a complete one, each followed by shutdown(SHUT_WR)
    t0 = time.time()
    out = srv.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro", shut_wr=True)
    check(time.time() - t0 < HANG, "a half-closed partial request is closed (%r)" % out[:30])
    body = b'{"prompt":"Once upon a time","max_tokens":50,"temperature":0}'
    out = srv.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" %
                  (len(body), body), shut_wr=True)
    check(out == b"" or out.startswith(b"HTTP/1.1 200"), "a half-closed complete request: answered or dropped, nothing else")
    # garbage
    for g in [b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET " + b"/a" * 40000 + b" HTTP/1.1\r\n\r\n", b"\r\n\r\n"]:
        try:
            srv.raw(g, timeout=3)
        except (BrokenPipeError, ConnectionResetError):
            pass
    # idle connections do not block others
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(50)]
    st, js, _ = srv.post(C, {"prompt": "x", "max_tokens": 2})
    check(st == 200, "50 idle connections open: a request is still served")
    for s in idle:
        s.close()
    m = srv.wait_idle()
    check(m.get("vllm:num_requests_running") == 0 and m.get("llamac:kv_cache_blocks_used") == 0, "after the bad input: idle, no KV in use")
    st, _, _ = srv.request("GET", "/health")
    check(st == 200, "still healthy")
    check(m.get("llamac:http_requests_total|status=400", 0) >= 40 and m.get("llamac:http_requests_total|status=415", 0) >= 2,
          "metrics count the answers by status")


def open_stream(srv, body, path="/v1/completions", headers=b""):
    """A streaming request on a raw socket; returns the socket after the first data: event arrived."""
    data = json.dumps(dict(body, stream=True)).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=HANG)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" %
              (path.encode(), headers, len(data), data))
    got = b""
    while b"data: " not in got:
        k = s.recv(4096)
        if not k:
            break
        got += k
    return s, got


def read_all(s):
    out = b""
    try:
        while True:
            k = s.recv(65536)
            if not k:
                break
            out += k
            if out.endswith(b"0\r\n\r\n"):
                break
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def test_disconnect(srv):
    before = srv.metrics().get("vllm:request_success_total|finished_reason=abort", 0)
    s, got = open_stream(srv, {"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "ignore_eos": True})
    check(got.startswith(b"HTTP/1.1 200") and b"text/event-stream" in got, "a stream starts")
    s.close()
    m = srv.wait_idle()
    check(m.get("vllm:num_requests_running") == 0 and m.get("llamac:kv_cache_blocks_used") == 0 and m.get("vllm:kv_cache_usage_perc") == 0,
          "a client leaving mid-stream: nothing running, no KV in use")
    # the answer may have finished before the close was seen; then it is counted as length
    check(m.get("vllm:request_success_total|finished_reason=abort", 0) + m.get("vllm:request_success_total|finished_reason=length", 0) > before,
          "the left request is finished (abort, or length if it completed first)")


def test_queue_full():
    with Server(STORIES, "--max-seqs", "1", "--max-queue", "0", "--ctx", "2048") as srv:
        s, got = open_stream(srv, {"prompt": "Once upon a time", "max_tokens": 2040, "temperature": 0, "ignore_eos": True})
        st, js, h = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
        # the long request may have finished already on a fast machine; then this one simply runs
        check((st == 429 and is_error(js, 429, st) and h.get("retry-after") == "1") or st == 200,
              "a full queue: 429 with Retry-After (got %d)" % st)
        rest = read_all(s)
        s.close()
        check(b"data: [DONE]" in rest, "the running stream ends with [DONE]")
        srv.wait_idle()
        st, js, h = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(st == 200, "room again: 200")


def test_api_key():
    keyfile = os.path.join(TMP, "serve_key.txt")
    with open(keyfile, "w") as f:
        f.write("sk-test-123\n")
    with Server(STORIES, "--api-key-file", keyfile, "--model-name", "tiny") as srv:
        st, js, _ = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(is_error(js, 401, st), "no key: 401")
        st, js, _ = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer sk-test-12"})
        check(is_error(js, 401, st), "a wrong key (a prefix of the right one): 401")
        st, js, _ = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer sk-test-1234"})
        check(is_error(js, 401, st), "a wrong key (longer): 401")
        st, js, _ = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "model": "tiny"}, {"Authorization": "Bearer sk-test-123"})
        check(st == 200 and js["model"] == "tiny", "the right key: 200, the model named by --model-name")
        st, _, _ = srv.request("GET", "/health")
        check(st == 200, "/health needs no key")
        st, _, _ = srv.request("GET", "/v1/models")
        check(st == 401, "/v1/models needs the key")


def test_drain():
    srv = Server(STORIES, "--timeout", "600")
    try:
        s, got = open_stream(srv, {"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "ignore_eos": True})
        srv.p.send_signal(signal.SIGTERM)
        rest = read_all(s)
        s.close()
        check(b"data: [DONE]" in rest, "SIGTERM: the running stream still finishes")
        rc = srv.stop()
        check(rc == 0, "SIGTERM: exit 0 (got %r)" % rc)
    finally:
        srv.kill()
    srv = Server(STORIES, "--timeout", "0")
    try:
        s, got = open_stream(srv, {"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "ignore_eos": True})
        srv.p.send_signal(signal.SIGINT)
        read_all(s)
        s.close()
        rc = srv.stop()
        check(rc == 0, "SIGINT with --timeout 0: the stream is cut, exit 0 (got %r)" % rc)
    finally:
        srv.kill()


def synth_tiny_llama3():
    """A synthetic model with Llama 3's vocabulary (128256: every token costs a big output matmul)."""
    model = os.path.join(TMP, "serve_tiny_l3.gguf")
    p = subprocess.run([LLAMAC, "synth", "--preset", "tiny", "--type", "f32", "-o", model], capture_output=True, timeout=HANG)
    return model if check(p.returncode == 0, "synth tiny") else None


def test_chat_llama3(model):
    with Server(model) as srv:
        for system, user in [("Be brief.", "Tell a story about a cat"), (None, "Hello there")]:
            ref = generate(model, user, 20, ["--chat"] + (["--system", system] if system else []))
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            st, js, _ = srv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 20, "temperature": 0})
            check(st == 200 and js["choices"][0]["message"]["content"] == ref["text"] and
                  js["usage"]["completion_tokens"] == len(ref["ids"]) and js["usage"]["prompt_tokens"] == len(ref["prompt_ids"]),
                  "Llama 3 chat %r equals llamac generate --chat" % user)
            st, js, _ = srv.post("/tokenize", {"messages": msgs})
            check(st == 200 and js["tokens"] == ref["prompt_ids"], "/tokenize of messages equals generate --chat's prompt")


def dechunk(raw):
    """The body of a raw HTTP/1.1 response with chunked transfer encoding."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = b""
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        body, rest = body + rest[:n], rest[n + 2:]
    return body


def test_keepalive(model):
    """A stream that waits must get `: keep-alive` comments: with one sequence at a time, B waits
    behind A, which runs until B's first comment has arrived (it is cancelled then), so B's stream
    holds a comment before its data however fast or slow the machine; without the comments B's first
    data would come after A's 4000 tokens."""
    with Server(model, "--max-seqs", "1", "--keepalive", "0.05") as srv:
        a, _ = open_stream(srv, {"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0, "ignore_eos": True})
        data = json.dumps({"prompt": "Hello", "max_tokens": 5, "temperature": 0, "ignore_eos": True, "stream": True}).encode()
        b = socket.create_connection(("127.0.0.1", srv.port), timeout=HANG)
        b.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" %
                  (len(data), data))
        got = b""
        while b": keep-alive" not in got and b"data: " not in got:
            k = b.recv(4096)
            if not k:
                break
            got += k
        a.close()
        raw = got + read_all(b)
        b.close()
        body = dechunk(raw).decode()
        first_comment, first_data = body.find(": keep-alive\n\n"), body.find("data: ")
        check(raw.startswith(b"HTTP/1.1 200") and 0 <= first_comment < first_data,
              "a queued stream gets ': keep-alive' comments before its data (%r)" % body[:80])
        ev = sse_events(body.encode())
        texts = [json.loads(e)["choices"][0]["text"] for e in ev[:-1]]
        check(ev[-1:] == ["[DONE]"] and len(texts) >= 5, "the stream with comments still parses as events and ends with [DONE]")
        m = srv.wait_idle()
        check(m.get("llamac:kv_cache_blocks_used") == 0, "after the keep-alive streams: no KV in use")


def main():
    if not os.path.exists(LLAMAC):
        sys.exit("%s not built" % LLAMAC)
    with Server(STORIES, "--max-body", "64K") as srv:
        test_exactness(srv)
        test_sampling(srv)
        test_errors(srv)
        test_disconnect(srv)
        m = srv.wait_idle()
        check(m.get("llamac:kv_cache_blocks_used") == 0, "at the end: no KV block in use")
    rc = srv.stop()
    check(rc == 0, "the server exits 0 on SIGTERM")
    test_queue_full()
    test_api_key()
    test_drain()
    tiny_l3 = synth_tiny_llama3()
    if tiny_l3:
        test_chat_llama3(tiny_l3)
        test_keepalive(tiny_l3)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
