"""`llamac serve` as the official `openai` Python client reaches it (the README's example). The client cannot be
installed here (no package index), so this test sends exactly what openai-python 1.x sends — its headers, its
JSON bodies, its SSE reading (comments skipped, `data: [DONE]` ends a stream) — with the standard library."""
import http.client
import json
import platform

import pytest

from conftest import GGUF, assert_golden
from serve_util import HANG, Server

KEY = "sk-test-python"


class OpenAIWire:
    """The requests of `openai.OpenAI(base_url=..., api_key=...)`."""

    def __init__(self, port, api_key):
        self.port = port
        self.headers = {
            "Content-Type": "application/json", "Accept": "application/json", "Authorization": "Bearer " + api_key,
            "User-Agent": "OpenAI/Python 1.54.0", "X-Stainless-Lang": "python",
            "X-Stainless-Package-Version": "1.54.0", "X-Stainless-OS": "Linux", "X-Stainless-Arch": "x64",
            "X-Stainless-Runtime": "CPython", "X-Stainless-Runtime-Version": platform.python_version(),
            "X-Stainless-Async": "false", "X-Stainless-Retry-Count": "0", "x-stainless-read-timeout": "600",
            "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}

    def create(self, path, **body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG)
        c.request("POST", "/v1" + path, json.dumps(body), self.headers)
        r = c.getresponse()
        if r.status >= 400:
            err = json.loads(r.read())
            c.close()
            raise APIStatusError(r.status, err)
        if not body.get("stream"):
            out = json.loads(r.read())
            c.close()
            return out
        return self._sse(c, r)

    @staticmethod
    def _sse(c, r):
        data = []
        for raw in r:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
                continue
            if line == "" and data:
                payload = "\n".join(data)
                data = []
                if payload == "[DONE]":
                    break
                yield json.loads(payload)
        c.close()


class APIStatusError(Exception):
    def __init__(self, status, body):
        super().__init__("%d %s" % (status, body))
        self.status_code = status
        self.body = body


@pytest.fixture(scope="module")
def client():
    with Server(GGUF, "--api-key", KEY, "--model-name", "stories") as s:
        yield OpenAIWire(s.port, KEY)


def test_completion_greedy_golden(client, gold):
    prompt, steps, want = gold[0]
    out = client.create("/completions", model="stories", prompt=prompt, max_tokens=steps, temperature=0)
    assert_golden(prompt + out["choices"][0]["text"], want)
    chunks = list(client.create("/completions", model="stories", prompt=prompt, max_tokens=steps, temperature=0,
                                stream=True, stream_options={"include_usage": True}))
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == out["choices"][0]["text"]
    assert chunks[-1]["usage"]["completion_tokens"] == steps


def test_chat_and_errors(client):
    out = client.create("/chat/completions", model="stories", messages=[{"role": "user", "content": "Hi"}],
                        max_tokens=8, temperature=0)
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["role"] == "assistant"
    with pytest.raises(APIStatusError) as e:
        client.create("/chat/completions", model="stories", messages=[], max_tokens=8)
    assert e.value.status_code == 400 and "message" in e.value.body["error"]
    bad = OpenAIWire(client.port, "wrong")
    with pytest.raises(APIStatusError) as e:
        bad.create("/completions", model="stories", prompt="x")
    assert e.value.status_code == 401
