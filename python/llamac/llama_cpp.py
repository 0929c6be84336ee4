"""llama-cpp-python's shape: `Llama(model_path=...)`, `create_completion`, `create_chat_completion`.

    from llamac import Llama            # instead of: from llama_cpp import Llama
    llm = Llama(model_path="model.gguf", n_ctx=2048, seed=1)
    out = llm("Once upon a time", max_tokens=32, stop=["\\n"])
    print(out["choices"][0]["text"])

Results are the dicts llama-cpp-python returns (OpenAI's shapes), an iterator of chunks with stream=True.
The defaults are llama-cpp-python's (completion: max_tokens 16, temperature 0.8, top_p 0.95, top_k 40,
min_p 0.05; chat: temperature 0.2, max_tokens until the end or the context). Parameters of llama-cpp-python
that llamac does not implement and that would change the output (grammar, mirostat, typical_p, tfs_z,
suffix, functions/tools, logits processors, ...) raise LlamacError when given a non-default value.
"""
import random
import time
import uuid
import warnings

from . import core
from .core import LlamacError

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama-cpp-python's "random seed"

# llama-cpp-python's chat_format names for the two formats llamac renders.
_CHAT_FORMATS = {None: "auto", "llama-3": "llama3", "llama-2": "llama2", "llama3": "llama3", "llama2": "llama2"}


def _refuse_unsupported(**given):
    """Raises for a parameter llamac lacks, when set to anything but its neutral value."""
    neutral = {"suffix": None, "typical_p": 1.0, "tfs_z": 1.0, "mirostat_mode": 0, "grammar": None,
               "stopping_criteria": None, "logits_processor": None, "functions": None, "function_call": None,
               "tools": None, "tool_choice": None, "response_format": None, "mirostat_tau": 5.0,
               "mirostat_eta": 0.1}
    for name, value in given.items():
        if value != neutral[name]:
            raise LlamacError("%s is not supported by llamac (got %r)" % (name, value))


class Llama(core.EngineFront):
    def __init__(self, model_path, *, n_ctx=512, n_threads=None, n_threads_batch=None, n_batch=512, seed=LLAMA_DEFAULT_SEED,
                 n_gpu_layers=0, chat_format=None, kv_type="f32", tokenizer_path=None, verbose=True):
        if chat_format not in _CHAT_FORMATS:
            raise LlamacError("chat_format must be one of llama-2, llama-3 or None (got %r)" % (chat_format,))
        if n_threads_batch not in (None, n_threads):
            raise LlamacError("llamac uses one thread count for prompts and decoding: n_threads_batch must equal "
                              "n_threads (got %r and %r)" % (n_threads_batch, n_threads))
        if n_gpu_layers:
            warnings.warn("llamac runs on the CPU: n_gpu_layers=%r has no effect (the output is the same)"
                          % (n_gpu_layers,), stacklevel=2)
        self.verbose = verbose
        self.model_path = str(model_path)
        self._model = core.Model(model_path, tokenizer_path=tokenizer_path)
        self._ctx = n_ctx or self._model.info.n_ctx_train
        # One sequence at a time, as llama-cpp-python; the engine gives the stop strings, penalties and
        # log-probabilities the server has.
        self._engine = core.Engine(self._model, max_seqs=1, n_ctx=self._ctx, kv_tokens=self._ctx, kv_type=kv_type,
                                   n_threads=n_threads or 0, step_tokens=core._check_int("n_batch", n_batch, 1))
        self._seed_rng = random.Random(None if seed in (None, -1, LLAMA_DEFAULT_SEED) else seed)
        self._chat_format = _CHAT_FORMATS[chat_format]
        self.tokenizer_ = self._model.tokenizer

    # ---- llama-cpp-python's small accessors ----
    def n_ctx(self):
        return self._engine.n_ctx

    def n_vocab(self):
        return self._model.n_vocab

    def token_bos(self):
        return self._model.tokenizer.bos

    def token_eos(self):
        return self._model.tokenizer.eos

    def tokenize(self, text, add_bos=True, special=False):
        if not isinstance(text, bytes):
            raise TypeError("Llama.tokenize takes bytes (as llama-cpp-python), got %s" % type(text).__name__)
        return self._model.tokenizer.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens, prev_tokens=None, special=False):
        tok = self._model.tokenizer
        if prev_tokens:
            d = tok.detokenizer()
            for t in prev_tokens:
                d.feed(t)
            return b"".join(d.feed(t) for t in tokens) + d.flush()
        return tok.detokenize(tokens)

    # ---- generation ----
    def _seed(self, seed):
        if seed is not None:
            return core._check_int("seed", seed, 0, 2**64 - 1)
        return self._seed_rng.getrandbits(64)

    def _request(self, ids, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop,
                 presence_penalty, frequency_penalty, logit_bias, n_logprobs, separate_text):
        if max_tokens is None or max_tokens <= 0:
            max_tokens = 0  # until the end of generation or the context
        if len(ids) > self._engine.n_ctx:
            raise LlamacError("Requested tokens (%d) exceed context window of %d" % (len(ids), self._engine.n_ctx))
        sampling = core.sampler_params(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                       repeat_penalty=repeat_penalty, seed=self._seed(seed))
        return dict(prompt_ids=ids, max_tokens=max_tokens, sampling=sampling, stop=stop or (),
                    presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                    logit_bias={int(k): v for k, v in (logit_bias or {}).items()},
                    logprobs=n_logprobs is not None, top_logprobs=n_logprobs or 0, separate_text=separate_text)

    def _piece(self, token):
        return self._model.tokenizer.token_bytes(token).decode("utf-8", "replace")

    def create_completion(self, prompt, suffix=None, max_tokens=16, temperature=0.8, top_p=0.95, min_p=0.05,
                          typical_p=1.0, logprobs=None, echo=False, stop=None, frequency_penalty=0.0,
                          presence_penalty=0.0, repeat_penalty=1.0, top_k=40, stream=False, seed=None, tfs_z=1.0,
                          mirostat_mode=0, mirostat_tau=5.0, mirostat_eta=0.1, model=None, stopping_criteria=None,
                          logits_processor=None, grammar=None, logit_bias=None):
        _refuse_unsupported(suffix=suffix, typical_p=typical_p, tfs_z=tfs_z, mirostat_mode=mirostat_mode,
                            mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, stopping_criteria=stopping_criteria,
                            logits_processor=logits_processor, grammar=grammar)
        if logprobs is not None:
            core._check_int("logprobs", logprobs, 0, 20)
            if echo:
                raise LlamacError("logprobs with echo (log-probabilities of the prompt) is not supported by llamac")
        if isinstance(prompt, (str, bytes)):
            ids = self._model.tokenizer.tokenize(prompt, add_bos=True)
            prompt_text = prompt.decode("utf-8", "replace") if isinstance(prompt, bytes) else prompt
        elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            ids = list(prompt)
            prompt_text = self._model.tokenizer.decode(ids)
        else:
            raise TypeError("prompt must be a str, bytes or a list of token ids")
        req = self._request(ids, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop,
                            presence_penalty, frequency_penalty, logit_bias, logprobs, False)
        head = {"id": "cmpl-" + str(uuid.uuid4()), "object": "text_completion", "created": int(time.time()),
                "model": model or self.model_path}
        if stream:
            return self._stream_completion(req, head, prompt_text if echo else "")
        c = self._engine.run([req])[0]
        text = (prompt_text if echo else "") + c.text
        choice = {"text": text, "index": 0, "logprobs": self._completion_logprobs(c, prompt_text if echo else ""),
                  "finish_reason": c.finish_reason}
        return dict(head, choices=[choice], usage=self._usage(c))

    __call__ = create_completion

    def _usage(self, c):
        return {"prompt_tokens": c.n_prompt, "completion_tokens": len(c.token_ids),
                "total_tokens": c.n_prompt + len(c.token_ids)}

    def _completion_logprobs(self, c, prefix):
        """OpenAI's legacy completions logprobs: tokens, text_offset, token_logprobs, top_logprobs."""
        if c.logprobs is None:
            return None
        out = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        offset = len(prefix)
        for t, (lp, top) in zip(c.token_ids, c.logprobs):
            piece = self._piece(t)
            out["tokens"].append(piece)
            out["text_offset"].append(offset)
            offset += len(piece)
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append({self._piece(i): v for i, v in top} if top else None)
        return out

    def _stream_completion(self, req, head, echo_text):
        if echo_text:
            yield dict(head, choices=[{"text": echo_text, "index": 0, "logprobs": None, "finish_reason": None}])
        for e in self._engine.stream(**req):
            lp = None
            if req["logprobs"] and e.token >= 0:
                lp = {"tokens": [self._piece(e.token)], "text_offset": [0], "token_logprobs": [e.logprob],
                      "top_logprobs": [{self._piece(i): v for i, v in e.top} if e.top else None]}
            text = e.text.decode("utf-8", "replace")
            if text or e.finish is None or lp:
                yield dict(head, choices=[{"text": text, "index": 0, "logprobs": lp, "finish_reason": None}])
            if e.finish:
                yield dict(head, choices=[{"text": "", "index": 0, "logprobs": None, "finish_reason": e.finish}])

    def create_chat_completion(self, messages, functions=None, function_call=None, tools=None, tool_choice=None,
                               temperature=0.2, top_p=0.95, top_k=40, min_p=0.05, typical_p=1.0, stream=False,
                               stop=None, seed=None, response_format=None, max_tokens=None, presence_penalty=0.0,
                               frequency_penalty=0.0, repeat_penalty=1.0, tfs_z=1.0, mirostat_mode=0,
                               mirostat_tau=5.0, mirostat_eta=0.1, model=None, logits_processor=None, grammar=None,
                               logit_bias=None, logprobs=None, top_logprobs=None):
        _refuse_unsupported(functions=functions, function_call=function_call, tools=tools, tool_choice=tool_choice,
                            typical_p=typical_p, tfs_z=tfs_z, mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
                            mirostat_eta=mirostat_eta, response_format=response_format,
                            logits_processor=logits_processor, grammar=grammar)
        if top_logprobs is not None and not logprobs:
            raise LlamacError("top_logprobs needs logprobs=True")
        ids = self._model.tokenizer.apply_chat(messages, add_generation_prompt=True, chat_format=self._chat_format)
        n_lp = (top_logprobs or 0) if logprobs else None
        req = self._request(ids, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop,
                            presence_penalty, frequency_penalty, logit_bias, n_lp, True)
        head = {"id": "chatcmpl-" + str(uuid.uuid4()), "object": "chat.completion", "created": int(time.time()),
                "model": model or self.model_path}
        if stream:
            return self._stream_chat(req, dict(head, object="chat.completion.chunk"))
        c = self._engine.run([req])[0]
        choice = {"index": 0, "message": {"role": "assistant", "content": c.text},
                  "logprobs": self._chat_logprobs(c.token_ids, c.logprobs), "finish_reason": c.finish_reason}
        return dict(head, choices=[choice], usage=self._usage(c))

    def _chat_logprobs(self, tokens, logprobs):
        if logprobs is None:
            return None

        def entry(t, lp):
            b = self._model.tokenizer.token_bytes(t)
            return {"token": b.decode("utf-8", "replace"), "logprob": lp, "bytes": list(b)}

        return {"content": [dict(entry(t, lp), top_logprobs=[entry(i, v) for i, v in top])
                            for t, (lp, top) in zip(tokens, logprobs)]}

    def _stream_chat(self, req, head):
        yield dict(head, choices=[{"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}])
        for e in self._engine.stream(**req):
            text = e.text.decode("utf-8", "replace")
            lp = self._chat_logprobs([e.token], [(e.logprob, e.top)]) if req["logprobs"] and e.token >= 0 else None
            if text or lp:
                yield dict(head, choices=[{"index": 0, "delta": {"content": text}, "logprobs": lp,
                                           "finish_reason": None}])
            if e.finish:
                yield dict(head, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": e.finish}])
