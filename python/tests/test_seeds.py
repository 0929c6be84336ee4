"""The seeds' APIs: seed 004's LLaMa.build(...).text_completion(...) on a Meta checkpoint folder, and seed
001's LlamaInference(model_id).generate(...) / estimate_memory()."""
import os

import pytest

import llamac
from conftest import GGUF, TOK_MODEL, assert_golden


@pytest.fixture(scope="module")
def meta_dir(tmp_path_factory):
    """stories260K as Meta's consolidated.00.pth + params.json, written by the Meta tests' own writer (CPython's
    pickler and a hand-made zip, not llamac); its tokenizer is tok512.model (SentencePiece)."""
    from test_meta import gguf_to_meta, F32
    out = str(tmp_path_factory.mktemp("meta") / "stories260K")
    gguf_to_meta(GGUF, out, F32)
    return out


def test_llama_build_text_completion_greedy(meta_dir, gold, sp):
    prompts = [p for p, _, _ in gold[:3]]
    model = llamac.LLaMa.build(checkpoints_dir=meta_dir, tokenizer_path=TOK_MODEL, load_model=True, max_seq_len=256,
                               max_batch_size=len(prompts), device="cpu")
    out_tokens, out_text = model.text_completion(prompts, temperature=0, max_gen_len=200)
    for (prompt, _, want), toks, text in zip(gold, out_tokens, out_text):
        assert toks[:1] == [1] and toks[1:len(sp.encode(prompt)) + 1] == sp.encode(prompt)
        assert_golden(text, want)
        assert text == sp.decode(toks[1:])  # the seed decodes with SentencePiece
        # every sequence runs to min(max_seq_len, max_gen_len + longest prompt) tokens (no EOS here)
    longest = max(len(sp.encode(p)) + 1 for p in prompts)
    assert [len(t) for t in out_tokens] == [min(256, 200 + longest)] * len(prompts)


def test_llama_build_sampling_and_refusals(meta_dir):
    model = llamac.LLaMa.build(meta_dir, TOK_MODEL, max_seq_len=64, max_batch_size=2)
    a = model.text_completion(["Once upon a time", "Tom"], temperature=0.6, top_p=0.9, max_gen_len=20)
    b = model.text_completion(["Once upon a time", "Tom"], temperature=0.6, top_p=0.9, max_gen_len=20)
    assert a == b  # seed=1, as Meta's build
    with pytest.raises(llamac.LlamacError, match="max_batch_size 2"):
        model.text_completion(["a", "b", "c"])
    with pytest.raises(llamac.LlamacError, match="CPU"):
        llamac.LLaMa.build(meta_dir, TOK_MODEL, device="cuda")
    with pytest.raises(llamac.LlamacError, match="load_model"):
        llamac.LLaMa.build(meta_dir, TOK_MODEL, load_model=False)
    with pytest.raises(llamac.LlamacError):
        llamac.LLaMa.build(os.path.join(meta_dir, "missing"), TOK_MODEL)


def test_llama_inference(gold):
    m = llamac.LlamaInference(model_id=GGUF, device="cpu", use_flash_attention=True)
    prompt, steps, want = gold[4]
    text = m.generate(prompt, max_length=steps + 20, temperature=0)
    assert_golden(text, want)
    assert len(m.tokenizer.tokenize(text)) >= steps  # max_length counts the prompt, as Hugging Face's
    est = m.estimate_memory(n_ctx=1024, batch_size=2)
    assert est["weights_bytes"] == _gguf_tensor_bytes(GGUF)
    assert est["kv_cache_bytes"] == 2 * (2 * 5 * 1024 * 4 * 8 * 4)
    assert est["total_bytes"] == est["weights_bytes"] + est["kv_cache_bytes"]
    with pytest.raises(llamac.LlamacError, match="CPU"):
        llamac.LlamaInference(GGUF, device="cuda")
    with pytest.raises(llamac.LlamacError, match="max_length"):
        m.generate(prompt, max_length=2)
    m.close()


def _gguf_tensor_bytes(path):
    """Bytes of all the GGUF's tensors, by tests/ref's reader."""
    from gguf_reader import GGUFFile
    return sum(t.nbytes for t in GGUFFile(path).tensors.values())
