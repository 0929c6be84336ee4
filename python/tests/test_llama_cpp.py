"""llama-cpp-python's shape: Llama(model_path), create_completion / __call__, create_chat_completion,
tokenize/detokenize. Greedy text must equal llama2.c's golden output; the dicts must have OpenAI's shape."""
import math

import numpy as np
import pytest

import llamac
from conftest import GGUF, assert_golden


@pytest.fixture(scope="module")
def llm():
    with llamac.Llama(model_path=GGUF, n_ctx=256, seed=1) as m:
        yield m


def test_greedy_golden(llm, gold):
    for prompt, steps, want in gold:
        out = llm(prompt, max_tokens=steps, temperature=0)
        assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
        ch = out["choices"][0]
        assert ch["index"] == 0 and ch["finish_reason"] == "length" and ch["logprobs"] is None
        assert_golden(prompt + ch["text"], want)
        u = out["usage"]
        assert u["completion_tokens"] == steps and u["total_tokens"] == u["prompt_tokens"] + steps
        assert u["prompt_tokens"] == len(llm.tokenize(prompt.encode()))


def test_echo_and_token_prompt(llm, gold):
    prompt, _, want = gold[1]
    out = llm(prompt, max_tokens=100, temperature=0, echo=True)
    assert_golden(out["choices"][0]["text"], want[:len(out["choices"][0]["text"])])
    ids = llm.tokenize(prompt.encode())
    assert llm.create_completion(ids, max_tokens=20, temperature=0)["choices"][0]["text"] == \
        llm(prompt, max_tokens=20, temperature=0)["choices"][0]["text"]


def test_stream_equals_whole(llm, gold):
    prompt = gold[2][0]
    whole = llm(prompt, max_tokens=60, temperature=0)["choices"][0]["text"]
    chunks = list(llm(prompt, max_tokens=60, temperature=0, stream=True))
    assert len(chunks) > 10
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


def test_stop_strings(llm, gold):
    prompt, _, want = gold[0]
    full = want[len(prompt):]
    out = llm(prompt, max_tokens=200, temperature=0, stop=["Lily"])
    ch = out["choices"][0]
    assert ch["finish_reason"] == "stop" and ch["text"] == full[:full.index("Lily")]
    streamed = "".join(c["choices"][0]["text"] for c in llm(prompt, max_tokens=200, temperature=0, stop=["park.", "xyz"],
                                                          stream=True))
    assert streamed == full[:full.index("park.")]


def test_seeds(llm):
    kw = dict(max_tokens=30, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = llm("Once upon a time", seed=42, **kw)["choices"][0]["text"]
    b = llm("Once upon a time", seed=42, **kw)["choices"][0]["text"]
    c = [llm("Once upon a time", seed=s, **kw)["choices"][0]["text"] for s in range(5)]
    assert a == b and len(set(c)) > 1
    # A Llama's seed fixes its sequence of calls, as llama-cpp-python's does.
    with llamac.Llama(model_path=GGUF, n_ctx=64, seed=7) as x, llamac.Llama(model_path=GGUF, n_ctx=64, seed=7) as y:
        assert [x("Tom", **kw)["choices"][0]["text"] for _ in range(2)] == [y("Tom", **kw)["choices"][0]["text"] for _ in range(2)]


def test_logprobs(llm):
    prompt = "Once upon a time"
    out = llm(prompt, max_tokens=8, temperature=0, logprobs=3)
    lp = out["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == 8
    assert "".join(lp["tokens"]).lstrip() == out["choices"][0]["text"].lstrip()
    # the first token's log-probability is the log-softmax of the logits after the prompt (a Session's)
    with llamac.Session(llamac.Model(GGUF), n_ctx=64) as s:
        logits = s.eval(llm.tokenize(prompt.encode())).astype(np.float64)
    logsm = logits - (np.log(np.sum(np.exp(logits - logits.max()))) + logits.max())
    assert math.isclose(lp["token_logprobs"][0], logsm.max(), abs_tol=1e-4)
    top = lp["top_logprobs"][0]
    assert len(top) == 3 and math.isclose(max(top.values()), logsm.max(), abs_tol=1e-4)


def test_chat(llm):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}]
    out = llm.create_chat_completion(msgs, max_tokens=20, temperature=0)
    assert out["object"] == "chat.completion"
    ch = out["choices"][0]
    assert ch["message"]["role"] == "assistant" and isinstance(ch["message"]["content"], str)
    assert ch["finish_reason"] in ("stop", "length")
    # the prompt is Meta's Llama 2 format, which SentencePiece tokenizes independently
    want_prompt = llm.tokenize(b"[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nTell me a story. [/INST]")
    assert out["usage"]["prompt_tokens"] == len(want_prompt)
    chunks = list(llm.create_chat_completion(msgs, max_tokens=20, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ch["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == ch["finish_reason"]
    lp = llm.create_chat_completion(msgs, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
    content = lp["choices"][0]["logprobs"]["content"]
    assert len(content) == 5 and all(len(c["top_logprobs"]) == 2 for c in content)


def test_tokenize_detokenize(llm, sp):
    assert llm.tokenize(b"Hello world") == [1] + sp.encode("Hello world")
    assert llm.detokenize(sp.encode("Hello world")) == b"Hello world"
    with pytest.raises(TypeError):
        llm.tokenize("not bytes")
    assert (llm.n_ctx(), llm.n_vocab(), llm.token_bos(), llm.token_eos()) == (256, 512, 1, 2)


def test_refusals(llm):
    with pytest.raises(llamac.LlamacError, match="grammar"):
        llm("x", grammar="root ::= \"a\"")
    with pytest.raises(llamac.LlamacError, match="mirostat"):
        llm("x", mirostat_mode=2)
    with pytest.raises(llamac.LlamacError, match="tools"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], tools=[{"type": "function"}])
    with pytest.raises(llamac.LlamacError, match="exceed context window of 256"):
        llm("word " * 400, max_tokens=4)
    with pytest.raises(llamac.LlamacError, match="temperature"):
        llm("x", temperature=-1)
    with pytest.raises(TypeError):
        llm("x", no_such_parameter=1)
    with pytest.raises(llamac.LlamacError):
        llamac.Llama(model_path="/nonexistent/model.gguf")
    with pytest.warns(UserWarning, match="n_gpu_layers"):
        llamac.Llama(model_path=GGUF, n_ctx=32, n_gpu_layers=-1).close()
