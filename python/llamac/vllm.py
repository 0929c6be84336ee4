"""vLLM's offline shape on llamac's batching engine: `LLM(model=...)`, `generate(prompts, SamplingParams(...))`.

    from llamac import LLM, SamplingParams      # instead of: from vllm import LLM, SamplingParams
    llm = LLM(model="model.gguf", max_num_seqs=16)
    outs = llm.generate(["Hello", "Once upon"], SamplingParams(temperature=0, max_tokens=32))
    for o in outs:
        print(o.prompt, o.outputs[0].text, o.outputs[0].finish_reason)

All prompts go to one engine together (continuous batching, prefix caching: the n samples of one prompt
share its KV blocks); results come back in input order. SamplingParams' defaults are vLLM's (temperature 1,
top_p 1, top_k off, max_tokens 16). Parameters llamac does not implement raise LlamacError when set.
"""
import sys
from types import SimpleNamespace

from . import core
from .core import LlamacError


class SamplingParams:
    """vLLM's SamplingParams (the subset llamac implements; the rest refused when set)."""

    def __init__(self, n=1, best_of=None, presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0,
                 temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, seed=None, stop=None, stop_token_ids=None,
                 ignore_eos=False, max_tokens=16, min_tokens=0, logprobs=None, prompt_logprobs=None,
                 skip_special_tokens=True, include_stop_str_in_output=False, logit_bias=None):
        self.n = core._check_int("n", n, 1)
        if best_of not in (None, n):
            raise LlamacError("best_of is not supported by llamac (got %r)" % (best_of,))
        if stop_token_ids:
            raise LlamacError("stop_token_ids is not supported by llamac (use stop strings)")
        if min_tokens:
            raise LlamacError("min_tokens is not supported by llamac (got %r)" % (min_tokens,))
        if prompt_logprobs is not None:
            raise LlamacError("prompt_logprobs is not supported by llamac")
        if include_stop_str_in_output:
            raise LlamacError("include_stop_str_in_output is not supported by llamac")
        if not skip_special_tokens:
            raise LlamacError("skip_special_tokens=False is not supported by llamac (control tokens decode to nothing)")
        if top_k == -1:  # vLLM's "off"
            top_k = 0
        self.presence_penalty = core._check_float("presence_penalty", presence_penalty)
        self.frequency_penalty = core._check_float("frequency_penalty", frequency_penalty)
        self.repetition_penalty = core._check_float("repetition_penalty", repetition_penalty)
        self.temperature = core._check_float("temperature", temperature)
        self.top_p = core._check_float("top_p", top_p)
        self.top_k = core._check_int("top_k", top_k, 0)
        self.min_p = core._check_float("min_p", min_p)
        self.seed = None if seed is None else core._check_int("seed", seed, 0, 2**64 - 1)
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        self.ignore_eos = bool(ignore_eos)
        self.max_tokens = None if max_tokens is None else core._check_int("max_tokens", max_tokens, 1)
        self.logprobs = None if logprobs is None else core._check_int("logprobs", logprobs, 0, 20)
        self.logit_bias = dict(logit_bias or {})

    def __repr__(self):
        return "SamplingParams(%s)" % ", ".join("%s=%r" % kv for kv in vars(self).items())


class Logprob(SimpleNamespace):
    """vLLM's Logprob: logprob, rank (1 = most likely; None when unknown), decoded_token."""


class CompletionOutput(SimpleNamespace):
    """index, text, token_ids, cumulative_logprob, logprobs, finish_reason ("stop"/"length"), stop_reason."""


class RequestOutput(SimpleNamespace):
    """request_id, prompt, prompt_token_ids, outputs (CompletionOutputs), finished, num_cached_tokens."""


def _progress_bar(total, desc):
    """vLLM shows tqdm; without tqdm installed, a plain line on stderr."""
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=desc, dynamic_ncols=True)
        return lambda done, _total: bar.update(done - bar.n), bar.close
    except ImportError:
        def show(done, _total):
            width = 30
            fill = width * done // max(1, total)
            sys.stderr.write("\r%s: [%s%s] %d/%d" % (desc, "#" * fill, "." * (width - fill), done, total))
            sys.stderr.flush()
        return show, lambda: sys.stderr.write("\n")


class LLM(core.EngineFront):
    def __init__(self, model, tokenizer=None, seed=0, max_num_seqs=64, max_model_len=None, kv_mem=0,
                 kv_cache_dtype="auto", enable_prefix_caching=True, n_threads=0, max_num_batched_tokens=None,
                 dtype="auto", trust_remote_code=False, device="cpu", tensor_parallel_size=1):
        if device not in ("cpu", "auto"):
            raise LlamacError("llamac runs on the CPU: device=%r is not available" % (device,))
        if tensor_parallel_size != 1:
            raise LlamacError("tensor_parallel_size must be 1 (llamac runs in one process)")
        if dtype != "auto":
            raise LlamacError("dtype must be 'auto': llamac computes with the weights' own types "
                              "(re-encode a model with `llamac quantize`)")
        kv_type = "f32" if kv_cache_dtype == "auto" else kv_cache_dtype
        self._model = core.Model(model, tokenizer_path=tokenizer)
        self._engine = core.Engine(self._model, max_seqs=max_num_seqs, n_ctx=max_model_len or 0, kv_mem=kv_mem,
                                   kv_type=kv_type, n_threads=n_threads, step_tokens=max_num_batched_tokens or 0,
                                   prefix_cache=enable_prefix_caching)
        self._seed = seed
        self._next_request = 0

    def get_tokenizer(self):
        return self._model.tokenizer

    def _prompts(self, prompts):
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        out = []
        tok = self._model.tokenizer
        for p in prompts:
            if isinstance(p, str):
                out.append((p, tok.tokenize(p, add_bos=True)))
            elif isinstance(p, dict) and "prompt_token_ids" in p:
                ids = list(p["prompt_token_ids"])
                out.append((p.get("prompt"), ids))
            elif isinstance(p, dict) and isinstance(p.get("prompt"), str):
                out.append((p["prompt"], tok.tokenize(p["prompt"], add_bos=True)))
            else:
                raise TypeError("a prompt must be a str, {'prompt': str} or {'prompt_token_ids': [...]}")
        return out

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        return self._run(self._prompts(prompts), sampling_params, use_tqdm, separate_text=False)

    def chat(self, messages, sampling_params=None, use_tqdm=True, add_generation_prompt=True, chat_format="auto"):
        """One conversation (a list of {"role", "content"}) or a list of them, rendered in the model's chat
        format (Llama 3 or Llama 2). RequestOutput.prompt is None (the rendering exists as token ids only)."""
        if messages and isinstance(messages[0], dict):
            messages = [messages]
        tok = self._model.tokenizer
        items = [(None, tok.apply_chat(m, add_generation_prompt=add_generation_prompt, chat_format=chat_format))
                 for m in messages]
        return self._run(items, sampling_params, use_tqdm, separate_text=True)

    def _run(self, items, sampling_params, use_tqdm, separate_text):
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = list(sampling_params) if isinstance(sampling_params, (list, tuple)) else [sampling_params] * len(items)
        if len(params) != len(items):
            raise LlamacError("%d sampling params for %d prompts" % (len(params), len(items)))
        reqs = []
        for i, ((_, ids), sp) in enumerate(zip(items, params)):
            if not isinstance(sp, SamplingParams):
                raise TypeError("sampling_params must be SamplingParams")
            for j in range(sp.n):
                # A fixed seed per request; without one, the LLM's seed and the request's number decide
                # (vLLM is reproducible for a given LLM seed in the same way).
                seed = (sp.seed + j) if sp.seed is not None else (self._seed * 1000003 + self._next_request + i) * 64 + j
                sampling = core.sampler_params(temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p,
                                               min_p=sp.min_p, repeat_penalty=sp.repetition_penalty,
                                               repeat_last_n=self._engine.n_ctx, seed=seed % 2**64)
                reqs.append(dict(prompt_ids=ids, max_tokens=sp.max_tokens or 0, sampling=sampling, stop=sp.stop,
                                 ignore_eos=sp.ignore_eos, separate_text=separate_text,
                                 presence_penalty=sp.presence_penalty, frequency_penalty=sp.frequency_penalty,
                                 logit_bias=sp.logit_bias, logprobs=sp.logprobs is not None,
                                 top_logprobs=sp.logprobs or 0))
        progress, finish = None, None
        if use_tqdm:
            progress, finish = (use_tqdm, None) if callable(use_tqdm) else _progress_bar(len(reqs), "Processed prompts")
        try:
            done = self._engine.run(reqs, progress=progress)
        finally:
            if finish:
                finish()
        tok = self._model.tokenizer
        outs, k = [], 0
        for i, ((prompt, ids), sp) in enumerate(zip(items, params)):
            outputs = []
            for j in range(sp.n):
                c = done[k]
                k += 1
                lps, cum = None, None
                if c.logprobs is not None:
                    lps, cum = [], 0.0
                    for t, (lp, top) in zip(c.token_ids, c.logprobs):
                        d = {i2: Logprob(logprob=v, rank=r + 1, decoded_token=tok.token_bytes(i2).decode("utf-8", "replace"))
                             for r, (i2, v) in enumerate(top)}
                        if t not in d:
                            d[t] = Logprob(logprob=lp, rank=None, decoded_token=tok.token_bytes(t).decode("utf-8", "replace"))
                        lps.append(d)
                        cum += lp
                outputs.append(CompletionOutput(index=j, text=c.text, token_ids=c.token_ids, cumulative_logprob=cum,
                                                logprobs=lps, finish_reason=c.finish_reason, stop_reason=None))
            outs.append(RequestOutput(request_id=str(self._next_request + i), prompt=prompt, prompt_token_ids=ids,
                                      outputs=outputs, finished=True, num_cached_tokens=done[k - 1].cached_tokens))
        self._next_request += len(items)
        return outs
