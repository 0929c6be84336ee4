"""vLLM's offline shape on the batching engine: LLM.generate / chat with SamplingParams."""
import pytest

import llamac
from conftest import GGUF, assert_golden


@pytest.fixture(scope="module")
def llm():
    with llamac.LLM(model=GGUF, max_num_seqs=4, max_model_len=256) as m:
        yield m


def test_batch_greedy_golden_in_order(llm, gold):
    prompts = [p for p, _, _ in gold]
    outs = llm.generate(prompts, llamac.SamplingParams(temperature=0, max_tokens=200), use_tqdm=False)
    assert [o.prompt for o in outs] == prompts
    for o, (prompt, _, want) in zip(outs, gold):
        assert len(o.outputs) == 1
        c = o.outputs[0]
        assert_golden(prompt + c.text, want)
        assert len(c.token_ids) == 200 and c.finish_reason == "length"
        assert o.prompt_token_ids == llm.get_tokenizer().tokenize(prompt) and o.finished


def test_batch_equals_single_runs(llm, gold):
    sp = llamac.SamplingParams(temperature=0.9, top_p=0.9, seed=11, max_tokens=40)
    prompts = [p for p, _, _ in gold]
    together = [o.outputs[0].token_ids for o in llm.generate(prompts, sp, use_tqdm=False)]
    alone = [llm.generate(p, sp, use_tqdm=False)[0].outputs[0].token_ids for p in prompts]
    assert together == alone


def test_n_samples_share_the_prompt(llm):
    sp = llamac.SamplingParams(n=4, temperature=1.0, seed=3, max_tokens=20)
    o = llm.generate({"prompt": "Once upon a time, in a small town"}, sp, use_tqdm=False)[0]
    assert [c.index for c in o.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in o.outputs}) > 1
    again = llm.generate("Once upon a time, in a small town", sp, use_tqdm=False)[0]
    assert [c.token_ids for c in again.outputs] == [c.token_ids for c in o.outputs]  # seeded


def test_token_prompts_stop_logprobs(llm, gold):
    prompt, _, want = gold[0]
    ids = llm.get_tokenizer().tokenize(prompt)
    o = llm.generate({"prompt_token_ids": ids}, llamac.SamplingParams(temperature=0, max_tokens=200, stop=["Lily"],
                                                                       logprobs=2), use_tqdm=False)[0]
    c = o.outputs[0]
    full = want[len(prompt):]
    assert c.text == full[:full.index("Lily")] and c.finish_reason == "stop"
    assert len(c.logprobs) == len(c.token_ids)
    for t, d in zip(c.token_ids, c.logprobs):
        assert t in d and d[t].rank == 1  # greedy: the sampled token is the most likely
    assert abs(c.cumulative_logprob - sum(d[t].logprob for t, d in zip(c.token_ids, c.logprobs))) < 1e-6


def test_chat_and_progress(llm, capsys):
    conv = [{"role": "user", "content": "Tell me a story."}]
    outs = llm.chat([conv, conv + [{"role": "assistant", "content": "Once"}, {"role": "user", "content": "More."}]],
                    llamac.SamplingParams(temperature=0, max_tokens=10))
    assert len(outs) == 2 and all(o.outputs[0].token_ids for o in outs)
    assert outs[0].outputs[0].text == llm.chat(conv, llamac.SamplingParams(temperature=0, max_tokens=10),
                                               use_tqdm=False)[0].outputs[0].text
    err = capsys.readouterr().err
    assert "2/2" in err or "100%" in err  # the progress bar (plain, or tqdm when installed)
    seen = []
    llm.generate(["a", "b", "c"], llamac.SamplingParams(max_tokens=2), use_tqdm=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3)


def test_refusals(llm):
    for kw, word in [(dict(stop_token_ids=[5]), "stop_token_ids"), (dict(min_tokens=3), "min_tokens"),
                     (dict(prompt_logprobs=1), "prompt_logprobs"), (dict(best_of=3), "best_of"),
                     (dict(include_stop_str_in_output=True), "include_stop_str")]:
        with pytest.raises(llamac.LlamacError, match=word):
            llamac.SamplingParams(**kw)
    with pytest.raises(TypeError):
        llamac.SamplingParams(no_such=1)
    with pytest.raises(llamac.LlamacError, match="256"):
        llm.generate("word " * 300, llamac.SamplingParams(max_tokens=2), use_tqdm=False)
    with pytest.raises(llamac.LlamacError, match="CPU"):
        llamac.LLM(model=GGUF, device="cuda")
    with pytest.raises(llamac.LlamacError, match="2 sampling params for 1"):
        llm.generate(["a"], [llamac.SamplingParams(), llamac.SamplingParams()], use_tqdm=False)
