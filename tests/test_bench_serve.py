#!/usr/bin/python3
"""llamac bench-serve against a scripted fake OpenAI-compatible server (http.server on a free loopback port).

The fake server streams a known number of chunks with known minimum delays, so the expected counts are
exact: requests, failures (an HTTP 500, an invalid JSON event, a line over the parser's bound, far more chunks
than max_tokens, an SSE error field, random bytes), output
tokens (from usage.completion_tokens when the stream has it, else one per chunk), prompt lengths (its
/tokenize counts words of more than 6 letters as two tokens, so the client must correct its prompts).
Latencies are only checked against lower bounds the server enforces (first-chunk delay, gaps) and for
ordering (p99 >= median); never against an upper bound, the machine may be loaded.
"""
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
TMP = os.environ.get("LLAMAC_TMP", "/tmp")
FIRST_DELAY = 0.05  # s before the first chunk
GAP = 0.02  # s between chunks
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def fake_tokens(text):
    return sum(2 if len(w) > 6 else 1 for w in text.split())


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self, script=None, tokenize="llamacpp", usage=True):
        with self.lock:
            self.script = script or {}  # request index -> "500" | "badjson" | "longline" | "chatty" | "error"
            self.tokenize = tokenize  # /tokenize dialect: "llamacpp", "vllm" or None (404)
            self.usage = usage
            self.requests = []  # parsed bodies of /v1/completions and /v1/chat/completions, in arrival order


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; the end of a stream is the close
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self.reply_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self.reply_json(404, {"error": "no such path"})

    def send(self, s):
        self.wfile.write(s.encode())
        self.wfile.flush()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        if self.path == "/tokenize":
            if not STATE.tokenize:
                return self.reply_json(404, {"error": "no tokenizer"})
            # Each dialect strict like the real servers: the other's fields are refused.
            if STATE.tokenize == "vllm":
                if set(body) != {"model", "prompt", "add_special_tokens"} or body["add_special_tokens"] is not False:
                    return self.reply_json(400, {"error": "unexpected fields %s" % sorted(body)})
                n = fake_tokens(body["prompt"])
                return self.reply_json(200, {"count": n, "max_model_len": 4096, "tokens": list(range(n))})
            if set(body) != {"content", "add_special"} or body["add_special"] is not False:
                return self.reply_json(400, {"error": "unexpected fields %s" % sorted(body)})
            return self.reply_json(200, {"tokens": list(range(fake_tokens(body["content"])))})
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            return self.reply_json(404, {"error": "no such path"})
        with STATE.lock:
            idx = len(STATE.requests)
            STATE.requests.append(body)
            kind = STATE.script.get(idx, "ok")
            usage = STATE.usage
        if kind == "500":
            return self.reply_json(500, {"error": {"message": "scripted failure", "code": 500}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            self.stream(body, chat, kind, usage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a bad stream, as it should

    def chunk(self, chat, text):
        if chat:
            return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
        return {"object": "text_completion", "choices": [{"index": 0, "text": text}]}

    def stream(self, body, chat, kind, usage):
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        max_tokens = body["max_tokens"]
        if chat:  # a role-only first delta carries no text: not a token
            self.send("data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}) + "\n\n")
        time.sleep(FIRST_DELAY)
        if kind == "badjson":
            self.send("data: " + json.dumps(self.chunk(chat, " a")) + "\n\n")
            self.send("data: {\"choices\": [ not json\n\n")
            return
        if kind == "chatty":  # far more text chunks than max_tokens
            for k in range(3 * max_tokens + 20):
                self.send("data: " + json.dumps(self.chunk(chat, "z")) + "\n\n")
            self.send("data: [DONE]\n\n")
            return
        if kind == "error":  # llama.cpp's server reports a failure mid-stream as an "error" field
            self.send("data: " + json.dumps(self.chunk(chat, " a")) + "\n\n")
            self.send("error: {\"code\": 500, \"message\": \"scripted mid-stream error\"}\n\n")
            return
        if kind == "garbage":  # random bytes with SSE-looking pieces, NULs and line ends mixed in
            rng = random.Random(5)
            parts = [b"data: ", b"\n", b"\r\n", b"\0", b":", b"{", b"event: error\n", b"data: [DONE]\n\n"]
            out = b"".join(rng.choice(parts) if rng.random() < 0.3 else bytes([rng.randrange(256)]) for _ in range(20000))
            self.wfile.write(out)
            return
        if kind == "longline":
            self.send("data: " + json.dumps(self.chunk(chat, " a")) + "\n\n")
            self.send("data: \"" + "x" * (1536 * 1024))  # over the 1 MiB bound, no newline
            return
        # With usage the stream packs the last two tokens in one chunk: the count must come from usage.
        n_chunks = max_tokens - 1 if usage and max_tokens > 1 else max_tokens
        for k in range(n_chunks):
            if k:
                time.sleep(GAP)
            ev = "data: " + json.dumps(self.chunk(chat, " w%d" % k)) + "\n\n"
            if k % 3 == 1:
                ev = ev.replace("\n", "\r\n")  # CRLF lines are SSE too
            if k % 3 == 2:  # a line split across two writes
                self.send(ev[:9])
                time.sleep(0.005)
                ev = ev[9:]
            if k == 0:
                ev = ": keep-alive comment\n" + ev
            self.send(ev)
        if usage:
            u = {"prompt_tokens": fake_tokens(prompt) + 1, "completion_tokens": max_tokens,
                 "total_tokens": fake_tokens(prompt) + 1 + max_tokens}
            self.send("data: " + json.dumps({"choices": [], "usage": u}) + "\n\n")
        self.send("data: [DONE]\n\n")


def run(args, timeout=120):
    return subprocess.run([LLAMAC, "bench-serve"] + args, capture_output=True, text=True, timeout=timeout)


def check_ordered(run_, label):
    for m in ("ttft", "tpot", "itl", "e2el"):
        med, p99, mean = run_["median_%s_ms" % m], run_["p99_%s_ms" % m], run_["mean_%s_ms" % m]
        check(p99 >= med >= 0 and mean >= 0, "%s: %s p99 %.2f >= median %.2f >= 0" % (label, m, p99, med))


KEYS = ["max_concurrency", "num_prompts", "completed", "failed", "duration", "total_input_tokens",
        "total_output_tokens", "request_throughput", "output_throughput", "total_token_throughput",
        "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
        "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms",
        "p99_e2el_ms", "errors"]

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
url = "http://127.0.0.1:%d" % server.server_address[1]
try:
    # 1. completions, one level of concurrency 4: 12 requests of which #2 gets a 500, #5 an invalid JSON
    # event, #7 an endless line, #9 too many chunks, #10 an error field, #11 random bytes; the model name comes from
    # /v1/models; prompts corrected via /tokenize.
    IN, OUT = 20, 6
    STATE.reset(script={2: "500", 5: "badjson", 7: "longline", 9: "chatty", 10: "error", 11: "garbage"})
    jpath = os.path.join(TMP, "bench_serve.json")
    if os.path.exists(jpath):
        os.remove(jpath)
    p = run(["--url", url + "/v1/", "--concurrency", "4", "--num-prompts", "12", "--warmup", "0", "--input-len", str(IN),
             "--output-len", str(OUT), "--seed", "7", "--json", jpath])
    check(p.returncode == 0, "completions run exits 0 (%s)" % p.stderr.strip()[-300:])
    for label in ("Successful requests:", "Benchmark duration (s):", "Request throughput (req/s):",
                  "Output token throughput (tok/s):", "Mean TTFT (ms):", "Median TTFT (ms):", "P99 TTFT (ms):",
                  "Mean TPOT (ms):", "P99 ITL (ms):", "Mean E2EL (ms):"):
        check(label in p.stdout, "table has '%s'" % label)
    check(" Serving Benchmark Result " in p.stdout, "table has vLLM's title")
    doc = json.load(open(jpath)) if os.path.exists(jpath) else {}
    runs = doc.get("runs", [])
    check(len(runs) == 1, "one run in the JSON")
    r = runs[0] if runs else {}
    missing = [k for k in KEYS if k not in r]
    check(not missing, "JSON run has every field (missing %s)" % missing)
    check(doc.get("model") == "fake-model", "model from GET /v1/models: %r" % doc.get("model"))
    check(doc.get("input_len_exact") is True, "input length exact through /tokenize")
    check(r.get("num_prompts") == 12 and r.get("max_concurrency") == 4, "12 prompts at concurrency 4")
    check(r.get("completed") == 6 and r.get("failed") == 6, "6 succeed, 6 fail: %s/%s" % (r.get("completed"), r.get("failed")))
    check(r.get("total_output_tokens") == 6 * OUT, "output tokens from usage = 6 x %d: %s" % (OUT, r.get("total_output_tokens")))
    reqs = STATE.requests
    check(len(reqs) == 12, "the server saw 12 requests: %d" % len(reqs))
    prompt_tokens = [fake_tokens(b["prompt"]) for b in reqs]
    check(all(t == IN for t in prompt_tokens), "every prompt is exactly %d tokens by the server's count: %s" % (IN, prompt_tokens))
    check(len({b["prompt"] for b in reqs}) == 12, "every prompt differs")
    check(r.get("total_input_tokens") == 6 * (IN + 1), "input tokens from usage.prompt_tokens: %s" % r.get("total_input_tokens"))
    check(all(b.get("model") == "fake-model" and b.get("max_tokens") == OUT and b.get("ignore_eos") is True and
              b.get("stream") is True and b.get("stream_options") == {"include_usage": True} for b in reqs),
          "requests carry model, max_tokens, ignore_eos, stream, stream_options.include_usage")
    errs = " | ".join(e["message"] for e in r.get("errors", []))
    check(sum(e["count"] for e in r.get("errors", [])) == 6, "6 errors counted: %s" % errs)
    check("HTTP status 500" in errs and "scripted failure" in errs, "the 500 is reported with its body")
    check("not a JSON object" in errs, "the invalid event is reported")
    check("longer than" in errs, "the over-long line is reported")
    check("text chunks for" in errs, "the excess of chunks is reported")
    check("scripted mid-stream error" in errs, "the error field is reported")
    check(r.get("mean_ttft_ms", 0) >= FIRST_DELAY * 1000 and r.get("median_ttft_ms", 0) >= FIRST_DELAY * 1000,
          "TTFT >= the scripted first delay (%.1f ms)" % r.get("median_ttft_ms", 0))
    min_e2e = (FIRST_DELAY + (OUT - 2) * GAP) * 1000  # OUT - 1 chunks: OUT - 2 gaps
    check(r.get("median_e2el_ms", 0) >= min_e2e and r.get("mean_e2el_ms", 0) >= min_e2e,
          "E2EL >= the scripted minimum %.0f ms (%.1f)" % (min_e2e, r.get("median_e2el_ms", 0)))
    check(r.get("mean_tpot_ms", 0) > 0 and r.get("mean_itl_ms", 0) > 0, "TPOT and ITL positive")
    check_ordered(r, "completions")

    # 2. chat, no /tokenize, no usage in the stream, a warm-up request, Poisson arrivals, two levels; JSON on
    # stdout (tables then on stderr).
    STATE.reset(tokenize=None, usage=False)
    p = run(["--url", url, "--endpoint", "chat", "--model", "m", "--concurrency", "1,3", "--num-prompts", "5",
             "--input-len", "8", "--output-len", "4", "--request-rate", "200", "--seed", "1", "--json", "-"])
    check(p.returncode == 0, "chat run exits 0 (%s)" % p.stderr.strip()[-300:])
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = {}
    check("Successful requests:" in p.stderr and "| concurrency |" in p.stderr, "tables on stderr with --json -")
    runs = doc.get("runs", [])
    check([x.get("max_concurrency") for x in runs] == [1, 3], "levels 1 and 3")
    check(doc.get("input_len_exact") is False and doc.get("request_rate") == 200, "approximate input, rate 200")
    reqs = STATE.requests
    check(len(reqs) == 11, "the server saw 1 warm-up + 2 x 5 requests: %d" % len(reqs))
    check(all(len(b["messages"][0]["content"].split()) == 8 and b["model"] == "m" for b in reqs),
          "without /tokenize a prompt is input-len words; --model is sent")
    for x in runs:
        check(x.get("completed") == 5 and x.get("failed") == 0, "c=%s: 5 succeed" % x.get("max_concurrency"))
        check(x.get("total_output_tokens") == 5 * 4, "c=%s: output tokens counted by chunk = 20: %s" %
              (x.get("max_concurrency"), x.get("total_output_tokens")))
        check(x.get("median_ttft_ms", 0) >= FIRST_DELAY * 1000, "c=%s: TTFT >= first delay" % x.get("max_concurrency"))
        check_ordered(x, "chat c=%s" % x.get("max_concurrency"))

    # 3. vLLM's /tokenize dialect also gives exact prompts.
    STATE.reset(tokenize="vllm")
    p = run(["--url", url, "--concurrency", "2", "--num-prompts", "4", "--warmup", "0", "--input-len", "12",
             "--output-len", "3", "--json", "-"])
    check(p.returncode == 0, "vLLM-dialect run exits 0 (%s)" % p.stderr.strip()[-300:])
    prompt_tokens = [fake_tokens(b["prompt"]) for b in STATE.requests]
    check(prompt_tokens == [12] * 4, "vLLM /tokenize: every prompt is exactly 12 tokens: %s" % prompt_tokens)
finally:
    server.shutdown()
    server.server_close()

# 4. Nothing listening: every request fails, counted, and the exit status says so.
s = socket.socket()
s.bind(("127.0.0.1", 0))
dead = "http://127.0.0.1:%d" % s.getsockname()[1]
s.close()
p = run(["--url", dead, "--model", "x", "--concurrency", "2", "--num-prompts", "3", "--warmup", "0", "--json", "-"])
check(p.returncode == 1 and "no request succeeded" in p.stderr, "no server: exit 1 (%d)" % p.returncode)
try:
    r = json.loads(p.stdout)["runs"][0]
except (ValueError, KeyError, IndexError):
    r = {}
check(r.get("failed") == 3 and r.get("completed") == 0, "no server: 3 failures counted")
p = run(["--url", url, "--endpoint", "grpc"])
check(p.returncode == 2, "unknown --endpoint is a usage error")
p = run(["--model", "x"])
check(p.returncode == 2 and "--url" in p.stderr, "--url is required")

print("bench-serve: %d failed" % len(failures))
sys.exit(1 if failures else 0)
