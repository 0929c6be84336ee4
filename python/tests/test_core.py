"""llamac's own objects from Python: Model, Tokenizer, Session, Sampler, Engine, and their errors.

References: SentencePiece (tokenizer), llama2.c's golden outputs (greedy text), the float64 numpy forward
pass of tests/ref (logits), and `llamac logits` (the same numbers through the CLI)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import llamac
from conftest import BIN, GGUF, LLAMAC, PRELOAD, TOK_BIN, TOK_MODEL, assert_golden


@pytest.fixture(scope="module")
def model():
    with llamac.Model(GGUF) as m:
        yield m


def test_info(model):
    i = model.info
    assert (i.n_layers, i.dim, i.n_heads, i.n_kv_heads, i.n_vocab) == (5, 64, 8, 4, 512)
    assert i.format == "gguf" and i.weight_type == "f32"
    assert model.kv_bytes(256) == 2 * 5 * 256 * 4 * 8 * 4  # K and V, layers, positions, kv heads x head_dim, f32
    assert model.kv_bytes(256, "f16") == model.kv_bytes(256) // 2
    names = [t.name for t in model.tensors()]
    assert "token_embd" in names and "blk.4.ffn_down" in names
    assert llamac.isa() in ("scalar", "avx2", "avx512")


TEXTS = ["", "héllo wörld ✓ 🦙", "a\nb\n\nc", "The end. \"Yes!\" 123"]
# tok512.model asks SentencePiece to collapse runs of spaces; the GGUF (as llama.cpp's) has no such flag, so
# those texts are checked through the .model only.
SPACES = [" leading space", "two  spaces", "trailing "]


def test_tokenizer_matches_sentencepiece(model, sp, gold):
    tok = model.tokenizer
    for text in [p for p, _, _ in gold] + TEXTS:
        assert tok.tokenize(text, add_bos=True) == [1] + sp.encode(text)
        assert tok.tokenize(text.encode(), add_bos=False) == sp.encode(text)
        assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))
    assert (tok.bos, tok.eos, tok.n_vocab) == (1, 2, 512)
    assert tok.is_eog(2) and not tok.is_eog(100)
    assert tok.token_bytes(2) == b""


def test_standalone_tokenizers(sp):
    with llamac.Tokenizer(TOK_MODEL) as tok:
        for text in TEXTS + SPACES:
            assert tok.tokenize(text) == [1] + sp.encode(text)
    with llamac.Tokenizer(TOK_BIN) as tok:
        assert tok.tokenize("Once upon a time") == [1] + sp.encode("Once upon a time")


def test_logits_match_cli_and_float64_reference(model, sp):
    from llama_ref import LlamaRef
    ids = [1] + sp.encode("Once upon a time, there was")
    with llamac.Session(model, n_ctx=64) as s:
        all_logits = s.eval_all(ids)
        assert all_logits.shape == (len(ids), 512) and all_logits.dtype == np.float32
        s.truncate(0)
        last = s.eval(ids)
        assert s.pos == len(ids)
    np.testing.assert_array_equal(last, all_logits[-1])
    cli = json.loads(subprocess.run([LLAMAC, "logits", "-m", GGUF, "--ids", ",".join(map(str, ids))],
                                    capture_output=True, check=True, timeout=120).stdout)
    cli_logits = np.array(cli["logits"] if isinstance(cli, dict) else cli, dtype=np.float32).reshape(-1)[-512:]
    np.testing.assert_array_equal(last, cli_logits)
    ref = LlamaRef(GGUF).forward(ids, last_only=True)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)[-512:]
    assert np.max(np.abs(last - ref)) / np.max(np.abs(ref)) < 1e-5


def test_stream_matches_golden(model, gold):
    for prompt, steps, want in gold:
        with llamac.Session(model, n_ctx=256) as s:
            pieces = list(s.stream(prompt, llamac.Sampler(model, temperature=0), max_tokens=steps))
        assert all(isinstance(p, str) for p in pieces) and len(pieces) > 50
        assert_golden(prompt + "".join(pieces), want)


def test_llama2c_checkpoint(gold):
    prompt, steps, want = gold[0]
    with llamac.Model(BIN, tokenizer_path=TOK_BIN) as m, llamac.Session(m, n_ctx=256) as s:
        assert m.info.format == "llama2c"
        assert_golden(prompt + "".join(s.stream(prompt, max_tokens=steps)), want)


def test_sampler(model):
    logits = np.zeros(512, dtype=np.float32)
    logits[77] = 5
    greedy = llamac.Sampler(model, temperature=0)
    assert greedy.sample(logits) == 77
    assert greedy.sample(memoryview(logits.tobytes()).cast("f")) == 77
    a = [llamac.Sampler(512, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7).sample(np.zeros(512, np.float32))
         for _ in range(3)]
    assert len(set(a)) == 1  # a seed decides
    draws = {llamac.Sampler(512, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=s).sample(np.zeros(512, np.float32))
             for s in range(20)}
    assert len(draws) > 5
    with pytest.raises(llamac.LlamacError, match="512 floats"):
        greedy.sample(np.zeros(10, np.float32))
    with pytest.raises(llamac.LlamacError, match="top-p"):
        llamac.Sampler(model, top_p=0)


def test_engine_direct(model, gold):
    with llamac.Engine(model, max_seqs=4, n_ctx=256) as e:
        reqs = [dict(prompt_ids=model.tokenizer.tokenize(p), max_tokens=steps,
                     sampling=llamac.sampler_params(temperature=0)) for p, steps, _ in gold]
        out = e.run(reqs)
        for (prompt, _, want), c in zip(gold, out):
            assert_golden(prompt + c.text, want)
            assert c.finish_reason == "length" and len(c.token_ids) == 200
        st = e.stats()
        assert st.kv_blocks_used == 0 and st.running == 0 and st.waiting == 0
        # a stream closed early cancels its request and frees its blocks
        g = e.stream(prompt_ids=reqs[0]["prompt_ids"], max_tokens=100, sampling=llamac.sampler_params(temperature=0))
        next(g)
        g.close()
        assert e.stats().kv_blocks_used == 0 and e.pending() == 0


def test_errors(model, tmp):
    with pytest.raises(llamac.LlamacError, match="no-such-file"):
        llamac.Model(tmp + "/no-such-file.gguf")
    bad = tmp + "/bad.gguf"
    open(bad, "wb").write(b"GGUF" + b"\xff" * 60)
    with pytest.raises(llamac.LlamacError):
        llamac.Model(bad)
    with pytest.raises(TypeError):
        llamac.Model(42)
    with pytest.raises(llamac.LlamacError, match="kv_type"):
        llamac.Session(model, kv_type="f8")
    with llamac.Session(model, n_ctx=16) as s:
        with pytest.raises(llamac.LlamacError, match="vocabulary"):
            s.eval([1, 512])
        with pytest.raises(llamac.LlamacError):
            s.eval(list(range(1, 30)))  # over the context of 16
        with pytest.raises(llamac.LlamacError):
            s.eval([])
    with llamac.Engine(model, max_seqs=1, n_ctx=32) as e:
        with pytest.raises(llamac.LlamacError, match="32"):
            e.submit(list(range(1, 50)), max_tokens=4)
        with pytest.raises(llamac.LlamacError, match="stop"):
            e.submit([1, 2], stop=[""])
        with pytest.raises(llamac.LlamacError, match="stop"):
            e.submit([1, 2], stop=["x"] * 65)


def test_close_is_safe(tmp):
    m = llamac.Model(GGUF)
    s = llamac.Session(m, n_ctx=16)
    e = llamac.Engine(m, max_seqs=1, n_ctx=16)
    tok = m.tokenizer
    m.close()  # closes what depends on it first
    assert s.closed and e.closed and tok.closed
    for f in (lambda: s.eval([1]), lambda: tok.tokenize("x"), lambda: e.submit([1]), lambda: m.kv_bytes(4)):
        with pytest.raises(llamac.LlamacError, match="closed"):
            f()
    m.close()
    s.close()  # twice: nothing happens
    del s, e, m


def test_without_numpy():
    """numpy is optional: logits are then a memoryview of floats, with the same values."""
    code = r"""
import sys
sys.modules["numpy"] = None  # import numpy fails
import llamac
m = llamac.Model(sys.argv[1])
s = llamac.Session(m, n_ctx=32)
last = s.eval([1, 403, 407])
assert isinstance(last, memoryview) and last.format == "f" and len(last) == 512, last
s.truncate(0)
rows = s.eval_all([1, 403, 407])
assert len(rows) == 3 and all(len(r) == 512 for r in rows)
assert list(rows[2]) == list(last)
assert llamac.Sampler(m, temperature=0).sample(last) == max(range(512), key=lambda i: last[i])
print(" ".join(repr(x) for x in last))
"""
    env = dict(os.environ, **({"LD_PRELOAD": PRELOAD} if PRELOAD else {}))
    out = subprocess.run([sys.executable, "-c", code, GGUF], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    with llamac.Model(GGUF) as m, llamac.Session(m, n_ctx=32) as s:
        want = s.eval([1, 403, 407])
    np.testing.assert_array_equal(np.array([float(x) for x in out.stdout.split()], dtype=np.float32), want)


def test_save_matches_cli_quantize(tmp):
    """Model.save is `llamac quantize`: the same bytes for the same type; progress sees every tensor."""
    seen = []
    with llamac.Model(GGUF) as m:
        st = m.save(tmp + "/q8.gguf", "q8_0", progress=lambda name, done, total: seen.append((name, done, total)))
        with pytest.raises(llamac.LlamacError, match="unknown type"):
            m.save(tmp + "/x.gguf", "q3_k")
        with pytest.raises(llamac.LlamacError, match="cancelled"):
            m.save(tmp + "/c.gguf", "q8_0", progress=lambda *a: False)
        with pytest.raises(ZeroDivisionError):
            m.save(tmp + "/z.gguf", "q8_0", progress=lambda *a: 1 / 0)
    assert not os.path.exists(tmp + "/c.gguf") and not os.path.exists(tmp + "/z.gguf")
    assert st["n_tensors"] == len(seen) and seen[-1][1] == seen[-1][2] == st["bytes"]
    subprocess.run([LLAMAC, "quantize", GGUF, tmp + "/cli.gguf", "q8_0"], check=True, capture_output=True, timeout=300)
    assert open(tmp + "/q8.gguf", "rb").read() == open(tmp + "/cli.gguf", "rb").read()
    with llamac.Model(tmp + "/q8.gguf") as q:
        assert q.info.weight_type == "q8_0"


def test_nul_characters(model):
    """Text with NUL is tokenized whole (its length is passed); where C takes NUL-terminated strings (chat
    messages, stop strings) it is refused instead of silently cut."""
    tok = model.tokenizer
    assert len(tok.tokenize("a\0b", add_bos=False)) > len(tok.tokenize("a", add_bos=False))
    with pytest.raises(llamac.LlamacError, match="NUL"):
        tok.apply_chat([{"role": "user", "content": "hi\0there"}])
    with llamac.Engine(model, max_seqs=1, n_ctx=32) as e:
        with pytest.raises(llamac.LlamacError, match="NUL"):
            e.submit([1, 2], stop=["a\0b"])
    with pytest.raises(ValueError, match="NUL"):
        llamac.Model(GGUF + "\0.ignored")
    with pytest.raises(llamac.LlamacError, match="not valid Unicode"):
        tok.tokenize("a\ud800b")  # a lone surrogate: no UTF-8 form, never a silent '?'

    assert tok.token_id("</s>\0") is None and tok.token_id("</s>") == 2


def test_estimate_memory():
    est = llamac.estimate_memory(GGUF, n_ctx=256)
    # stories260K: 5 layers of 4 KV heads x 8 values, f32: 2 x 5 x 256 x 32 x 4 bytes of keys and values
    assert 2 * 5 * 256 * 32 * 4 <= est["kv_cache"] < 2 * 5 * 256 * 32 * 4 + 8192
    assert est["n_ctx"] == 256 and est["n_seqs"] == 1 and set(est["types"]) == {"f32"}
    assert est["total"] == est["weights"] + est["kv_cache"] + est["scratch"] + est["tokenizer"]
    # the same figures from the file's bytes (what a ranged fetch of a remote GGUF's head brings)
    with open(GGUF, "rb") as f:
        head = f.read()
    assert llamac.estimate_memory(head, n_ctx=256) == est
    q4 = llamac.estimate_memory(GGUF, n_ctx=256, type="q4_0", n_seqs=4, kv_type="f16")
    assert q4["types"]["q4_0"] > 0 and q4["n_seqs"] == 4
    with pytest.raises(llamac.LlamacError):
        llamac.estimate_memory(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(llamac.LlamacError):
        llamac.estimate_memory(GGUF, type="q3_z")
