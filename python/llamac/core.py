"""llamac's own Python API, one class per object of include/llamac.h: Model, Tokenizer, Session, Sampler, Engine.

The other shapes (llama-cpp-python's Llama, vLLM's LLM, seed 004's LLaMa, seed 001's LlamaInference) are
thin layers over these; every generation among them runs on Engine, so stop strings, penalties, seeds and
log-probabilities mean the same everywhere (they are computed by the C engine, as `llamac serve` does).

Ownership: an object frees its C resources on close(), at the end of a `with` block, or when garbage
collected, exactly once. A Model closed while sessions or engines made from it are open closes them first
(they would otherwise point into freed weights); using a closed object raises LlamacError.
"""
import ctypes
import os
import threading
import weakref
from ctypes import byref, c_char_p, c_float, c_int, c_int32, c_void_p
from types import SimpleNamespace

from . import _native as N
from ._native import LlamacError

try:
    import numpy as _np
except ImportError:  # logits become memoryviews
    _np = None

# Text is passed to C as UTF-8. A str with a lone surrogate has no UTF-8 form: refused, rather than
# tokenized as a silently substituted character.
def _utf8(text):
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise TypeError("expected str or bytes, got %s" % type(text).__name__)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LlamacError("text is not valid Unicode: %s at position %d" % (e.reason, e.start)) from None


def _path(path, what):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError("%s must be a path, got %s" % (what, type(path).__name__))
    p = os.fsencode(path)
    if b"\0" in p:  # as open() does: C would read a shorter path
        raise ValueError("%s contains a NUL character" % what)
    return p


def _check_int(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("%s must be an int, got %r" % (name, v))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = "in [%s, %s]" % (lo, hi) if hi is not None else ">= %s" % lo
        raise LlamacError("%s must be %s (got %d)" % (name, bounds, v))
    return v


def _check_float(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("%s must be a number, got %r" % (name, v))
    return float(v)


def random_seed():
    return int.from_bytes(os.urandom(8), "little")


class _Handle:
    """A C object: its pointer, its free function, the object it depends on and those depending on it."""

    _free = None

    def __init__(self, ptr, owner=None):
        self._ptr = ptr
        self._owner = owner
        self._children = weakref.WeakSet()
        if owner is not None:
            owner._children.add(self)

    @property
    def ptr(self):
        if not self._ptr:
            raise LlamacError("%s is closed" % type(self).__name__)
        return self._ptr

    @property
    def closed(self):
        return not self._ptr

    def close(self):
        ptr, self._ptr = self._ptr, None
        if not ptr:
            return
        for child in list(self._children):
            child.close()
        if self._free is not None:
            self._free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the module globals may be gone
            pass


class Model(_Handle):
    """A loaded model: a GGUF, a llama2.c .bin (with tokenizer_path), a Hugging Face or a Meta folder."""

    _free = staticmethod(N.lib.llamac_model_free)

    def __init__(self, path, tokenizer_path=None):
        params = N.ModelParams(_path(tokenizer_path, "tokenizer_path") if tokenizer_path is not None else None)
        err = N.Error()
        ptr = N.lib.llamac_model_load(_path(path, "model path"), byref(params), byref(err))
        if not ptr:
            raise N.fail(err)
        super().__init__(ptr)
        self.path = os.fspath(path)
        info = N.ModelInfo()
        N.lib.llamac_model_get_info(ptr, byref(info))
        self.info = SimpleNamespace(**{
            name: (getattr(info, name).decode() if isinstance(getattr(info, name), bytes) else getattr(info, name))
            for name, _ in N.ModelInfo._fields_})
        self.tokenizer = Tokenizer._borrowed(N.lib.llamac_model_tokenizer(ptr), self)

    @property
    def n_vocab(self):
        return self.info.n_vocab

    def kv_bytes(self, n_ctx, kv_type="f32"):
        """Bytes of KV cache n_ctx positions need with the given element type."""
        return int(N.lib.llamac_model_kv_bytes(self.ptr, _check_int("n_ctx", n_ctx, 1), _kv_type(kv_type)))

    def tensors(self):
        out = []
        t = N.TensorInfo()
        for i in range(N.lib.llamac_model_n_tensors(self.ptr)):
            if N.lib.llamac_model_tensor(self.ptr, i, byref(t)):
                out.append(SimpleNamespace(name=t.name.decode(), type=t.type.decode(), shape=(t.rows, t.cols),
                                           bytes=t.bytes, tied=t.tied))
        return out


    def save(self, path, type=None, n_threads=0, progress=None):
        """Writes the model as a GGUF (`llamac convert` / `llamac quantize`): type None keeps each tensor's
        type, else "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m", "q4_k_s". progress(name,
        done_bytes, total_bytes) is called after each tensor; returning False cancels (nothing is left on
        disk). Returns a dict: n_tensors, bytes, n_elements, n_threads, file_type."""
        if type is not None and not N.lib.llamac_save_type_known(_utf8(type)):
            raise LlamacError("unknown type %r (one of %s)" % (type, N.lib.llamac_save_type_names().decode()))
        failure = []

        def hook(_user, tensor, done, total):
            try:
                return progress(tensor.contents.name.decode(), done, total) is not False
            except BaseException as e:  # noqa: BLE001 — re-raised after the C call returns
                failure.append(e)
                return False
        p = N.SaveParams(_utf8(type) if type is not None else None, _check_int("n_threads", n_threads, 0), None,
                         N.SAVE_PROGRESS(hook) if progress else N.SAVE_PROGRESS(), None)
        st = N.SaveStats()
        err = N.Error()
        ok = N.lib.llamac_model_save(self.ptr, _path(path, "path"), byref(p), byref(st), byref(err))
        if failure:
            raise failure[0]
        if not ok:
            raise N.fail(err)
        return {"n_tensors": st.n_tensors, "bytes": st.bytes, "n_elements": st.n_elements, "n_threads": st.n_threads,
                "file_type": st.file_type.decode() if st.file_type else None}


def _kv_type(name):
    if isinstance(name, int) and not isinstance(name, bool) and name in N.KV_TYPES.values():
        return name
    t = N.KV_TYPES.get(str(name).lower()) if isinstance(name, str) else None
    if t is None:
        raise LlamacError("kv_type must be one of %s (got %r)" % (", ".join(N.KV_TYPES), name))
    return t


def estimate_memory(source, n_ctx=0, n_seqs=1, type=None, kv_type="f32"):
    """The memory a run of a model will take, from its header alone (llamac_estimate_memory): source is a
    path (GGUF, llama2.c .bin, Hugging Face folder or config.json) or the first bytes of a GGUF (bytes
    holding its whole header). A dict of byte counts: weights, embedding_by_row (an untied embedding, not
    in total), kv_cache, scratch, tokenizer, total; and types ({type: bytes as stored}), n_params, n_ctx."""
    params = N.MemoryParams(_check_int("n_ctx", n_ctx, 0, 1 << 24), _check_int("n_seqs", n_seqs, 1, 65536),
                            type.encode() if type else None, _kv_type(kv_type))
    est, err = N.MemoryEstimate(), N.Error()
    if isinstance(source, (bytes, bytearray)):
        ok = N.lib.llamac_estimate_memory_gguf(bytes(source), len(source), byref(params), byref(est), byref(err))
    else:
        ok = N.lib.llamac_estimate_memory(_path(source, "model"), byref(params), byref(est), byref(err))
    if not ok:
        raise N.fail(err)
    out = {k: getattr(est, k) for k in ("weights", "embedding_by_row", "kv_cache", "scratch", "tokenizer", "total", "n_params",
                                        "n_ctx", "n_seqs")}
    out["types"] = {est.types[i].type.decode(): est.types[i].bytes for i in range(est.n_types)}
    return out


def isa():
    """The instruction set the kernels use on this CPU ("scalar", "avx2", "avx512")."""
    return N.lib.llamac_isa().decode()


class Tokenizer(_Handle):
    """A tokenizer: a model's own (Model.tokenizer) or one loaded from a file (GGUF, tokenizer.json,
    tokenizer.model of SentencePiece or tiktoken, llama2.c tokenizer.bin)."""

    _free = staticmethod(N.lib.llamac_tokenizer_free)

    def __init__(self, path):
        err = N.Error()
        ptr = N.lib.llamac_tokenizer_load(_path(path, "tokenizer path"), byref(err))
        if not ptr:
            raise N.fail(err)
        super().__init__(ptr)

    @classmethod
    def _borrowed(cls, ptr, model):
        t = cls.__new__(cls)
        _Handle.__init__(t, ptr, model)
        t._free = None  # the model owns it
        return t

    @property
    def n_vocab(self):
        return N.lib.llamac_tokenizer_n_vocab(self.ptr)

    @property
    def bos(self):
        return N.lib.llamac_tokenizer_bos(self.ptr)

    @property
    def eos(self):
        return N.lib.llamac_tokenizer_eos(self.ptr)

    def is_eog(self, token):
        return bool(N.lib.llamac_tokenizer_is_eog(self.ptr, token))

    def tokenize(self, text, add_bos=True, special=False):
        """Token ids of text (str or UTF-8 bytes)."""
        data = _utf8(text)
        err = N.Error()
        cap = len(data) + 2
        while True:
            out = (c_int32 * cap)()
            n = N.lib.llamac_tokenize(self.ptr, data, len(data), bool(add_bos), bool(special), out, cap, byref(err))
            if n < 0:
                raise N.fail(err)
            if n <= cap:
                return out[:n]
            cap = n

    encode = tokenize

    def token_bytes(self, token):
        """The bytes one token stands for (b"" for control tokens)."""
        self._check_id(token)
        p = c_void_p()
        n = N.lib.llamac_token_bytes(self.ptr, token, byref(p))
        return ctypes.string_at(p.value, n) if n else b""

    def token_id(self, text):
        """The id of the token spelled exactly text (e.g. "<|eot_id|>"), or None."""
        spelled = _utf8(text)
        if b"\0" in spelled:
            return None  # no token is spelled with a NUL (C would look up a shorter text)
        i = N.lib.llamac_tokenizer_token_id(self.ptr, spelled)
        return None if i < 0 else i

    def _check_id(self, token):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < self.n_vocab:
            raise LlamacError("token id %r outside the vocabulary [0, %d)" % (token, self.n_vocab))

    def detokenize(self, ids):
        """The UTF-8 bytes of ids, as llamac prints them (a SentencePiece text drops its leading space)."""
        d = self.detokenizer()
        return b"".join(d.feed(t) for t in ids) + d.flush()

    def decode(self, ids):
        return self.detokenize(ids).decode("utf-8", "replace")

    def detokenizer(self):
        return Detokenizer(self)

    @property
    def chat_template(self):
        t = N.lib.llamac_tokenizer_chat_template(self.ptr)
        return t.decode("utf-8", "replace") if t else None

    def chat_format(self):
        return {1: "llama3", 2: "llama2"}[N.lib.llamac_chat_format_detect(self.ptr)]

    def apply_chat(self, messages, add_generation_prompt=True, chat_format="auto"):
        """Token ids of a conversation (a list of {"role", "content"}) in the model's chat format."""
        if chat_format not in N.CHAT_FORMATS:
            raise LlamacError("chat_format must be one of %s (got %r)" % (", ".join(N.CHAT_FORMATS), chat_format))
        if not isinstance(messages, (list, tuple)) or not messages:
            raise LlamacError("messages must be a non-empty list of {'role', 'content'}")
        arr = (N.ChatMessage * len(messages))()
        keep = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise LlamacError("message %d must be a dict with 'role' and 'content'" % i)
            content = m["content"]
            if isinstance(content, list):  # OpenAI's parts: only text ones
                texts = []
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise LlamacError("message %d: only text content parts are supported" % i)
                    texts.append(part["text"])
                content = "".join(texts)
            if not isinstance(content, str) or not isinstance(m["role"], str):
                raise LlamacError("message %d: role and content must be strings" % i)
            role, text = m["role"].encode(), _utf8(content)
            if b"\0" in role or b"\0" in text:  # C strings: a NUL would silently cut the message
                raise LlamacError("message %d contains a NUL character" % i)
            keep += [role, text]
            arr[i].role, arr[i].content = role, text
        err = N.Error()
        cap = 256
        while True:
            out = (c_int32 * cap)()
            n = N.lib.llamac_chat_tokenize(self.ptr, N.CHAT_FORMATS[chat_format], arr, len(messages),
                                           bool(add_generation_prompt), out, cap, byref(err))
            if n < 0:
                raise N.fail(err)
            if n <= cap:
                return out[:n]
            cap = n


class Detokenizer:
    """Streaming detokenizer: feed ids one by one, get bytes that never end inside a UTF-8 character."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self._d = N.Detokenizer()
        N.lib.llamac_detokenizer_init(byref(self._d), tokenizer.ptr)
        self._buf = ctypes.create_string_buffer(N.lib.llamac_detokenizer_max_bytes(tokenizer.ptr) + 8)

    def feed(self, token):
        self._tok._check_id(token)
        n = N.lib.llamac_detokenize(byref(self._d), token, self._buf, len(self._buf))
        return self._buf.raw[:n]

    def flush(self):
        n = N.lib.llamac_detokenizer_flush(byref(self._d), self._buf, len(self._buf))
        return self._buf.raw[:n]


def _logits_out(ptr, n_rows, n_vocab, matrix=False):
    n = n_rows * n_vocab
    if _np is not None:
        a = _np.ctypeslib.as_array(ptr, (n,)).copy()
        return a.reshape(n_rows, n_vocab) if matrix else a
    # Without numpy: a memoryview of floats per position (memoryviews cannot index rows of a 2-D view).
    rows = []
    for r in range(n_rows):
        buf = (c_float * n_vocab)()
        ctypes.memmove(buf, ctypes.cast(ptr, c_void_p).value + 4 * r * n_vocab, n_vocab * 4)
        rows.append(memoryview(buf).cast("B").cast("f"))
    return rows if matrix else rows[0]


class Session(_Handle):
    """A KV cache and the forward pass over it: feed ids, get the next-token logits."""

    _free = staticmethod(N.lib.llamac_session_free)

    def __init__(self, model, n_ctx=0, n_threads=0, kv_type="f32"):
        p = N.SessionParams(_check_int("n_ctx", n_ctx, 0), _check_int("n_threads", n_threads, 0), _kv_type(kv_type))
        err = N.Error()
        ptr = N.lib.llamac_session_create(model.ptr, byref(p), byref(err))
        if not ptr:
            raise N.fail(err)
        super().__init__(ptr, model)
        self.model = model

    @property
    def pos(self):
        return N.lib.llamac_session_pos(self.ptr)

    @property
    def n_ctx(self):
        return N.lib.llamac_session_n_ctx(self.ptr)

    def _ids(self, ids):
        ids = list(ids)
        if not ids:
            raise LlamacError("eval needs at least one token")
        n_vocab = self.model.n_vocab
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_vocab:
                raise LlamacError("token id %r outside the vocabulary [0, %d)" % (t, n_vocab))
        return (c_int32 * len(ids))(*ids), len(ids)

    def eval(self, ids):
        """Runs ids at the next positions; returns the last one's logits (numpy float32 array when numpy is
        installed, else a memoryview of floats)."""
        arr, n = self._ids(ids)
        err = N.Error()
        p = N.lib.llamac_session_eval(self.ptr, arr, n, byref(err))
        if not p:
            raise N.fail(err)
        return _logits_out(p, 1, self.model.n_vocab)

    def eval_all(self, ids):
        """Like eval, but the logits of every token: an array of shape (len(ids), n_vocab) (without numpy, a
        list of memoryviews, one per token)."""
        arr, n = self._ids(ids)
        out = (c_float * (n * self.model.n_vocab))()
        err = N.Error()
        if N.lib.llamac_session_eval_all(self.ptr, arr, n, out, byref(err)) < 0:
            raise N.fail(err)
        return _logits_out(ctypes.cast(out, ctypes.POINTER(c_float)), n, self.model.n_vocab, matrix=True)

    def truncate(self, pos=0):
        """Forgets every position from pos on (0: start over)."""
        N.lib.llamac_session_truncate(self.ptr, _check_int("pos", pos, 0))

    reset = truncate

    def stream(self, prompt, sampler=None, max_tokens=None, add_bos=True):
        """A generator of the text pieces of a completion of prompt (str, or a list of ids), continuing the
        session's positions; ends at an end-of-generation token, max_tokens, or the context's end."""
        tok = self.model.tokenizer
        ids = tok.tokenize(prompt, add_bos=add_bos) if isinstance(prompt, (str, bytes)) else list(prompt)
        if max_tokens is not None:
            _check_int("max_tokens", max_tokens, 0)
        sampler = sampler or Sampler(self.model, temperature=0)
        for t in ids:
            sampler.accept(t)
        if self.pos + len(ids) > self.n_ctx:
            raise LlamacError("prompt of %d tokens does not fit the context (%d of %d positions used)"
                              % (len(ids), self.pos, self.n_ctx))
        d = tok.detokenizer()
        for t in ids:  # the prompt's text is fed so the completion's pieces continue it
            d.feed(t)
        logits = self.eval(ids)
        n = 0
        while max_tokens is None or n < max_tokens:
            t = sampler.sample(logits)
            if tok.is_eog(t):
                break
            sampler.accept(t)
            n += 1
            piece = d.feed(t)
            if piece:
                yield piece.decode("utf-8")
            if self.pos >= self.n_ctx:
                break
            logits = self.eval([t])
        tail = d.flush()
        if tail:
            yield tail.decode("utf-8")


def sampler_params(temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None, repeat_last_n=None,
                   seed=None):
    """llamac_sampler_params: the library's defaults with the given ones replaced (None keeps a default;
    seed None: a random one)."""
    p = N.lib.llamac_sampler_defaults()
    if temperature is not None:
        p.temperature = _check_float("temperature", temperature)
    if top_k is not None:
        p.top_k = _check_int("top_k", top_k, 0)
    if top_p is not None:
        p.top_p = _check_float("top_p", top_p)
    if min_p is not None:
        p.min_p = _check_float("min_p", min_p)
    if repeat_penalty is not None:
        p.repeat_penalty = _check_float("repeat_penalty", repeat_penalty)
    if repeat_last_n is not None:
        p.repeat_last_n = _check_int("repeat_last_n", repeat_last_n, 0)
    p.seed = random_seed() if seed is None or seed == -1 else _check_int("seed", seed, 0, 2**64 - 1)
    return p


class Sampler(_Handle):
    """Picks the next token from logits: temperature (0: greedy), top-k, top-p, min-p, repetition penalty."""

    _free = staticmethod(N.lib.llamac_sampler_free)

    def __init__(self, model_or_n_vocab, temperature=None, top_k=None, top_p=None, min_p=None, repeat_penalty=None,
                 repeat_last_n=None, seed=None):
        n_vocab = model_or_n_vocab if isinstance(model_or_n_vocab, int) else model_or_n_vocab.n_vocab
        p = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed)
        err = N.Error()
        ptr = N.lib.llamac_sampler_create(byref(p), _check_int("n_vocab", n_vocab, 1), byref(err))
        if not ptr:
            raise N.fail(err)
        super().__init__(ptr)
        self.n_vocab = n_vocab

    def sample(self, logits):
        if _np is not None and isinstance(logits, _np.ndarray):
            a = _np.ascontiguousarray(logits, dtype=_np.float32)
            if a.ndim != 1 or a.size != self.n_vocab:
                raise LlamacError("logits must be %d floats (got shape %s)" % (self.n_vocab, a.shape))
            return N.lib.llamac_sampler_sample(self.ptr, a.ctypes.data_as(ctypes.POINTER(c_float)))
        m = memoryview(logits).cast("B")
        if m.nbytes != 4 * self.n_vocab:
            raise LlamacError("logits must be %d floats (got %d bytes)" % (self.n_vocab, m.nbytes))
        buf = (c_float * self.n_vocab).from_buffer_copy(m)
        return N.lib.llamac_sampler_sample(self.ptr, buf)

    def accept(self, token):
        N.lib.llamac_sampler_accept(self.ptr, token)


class Completion(SimpleNamespace):
    """One finished engine request: token_ids (generated), text (str), finish_reason ("stop", "length",
    "cancelled"), n_prompt, cached_tokens, and logprobs (per token: (logprob, [(id, logprob), ...])) when asked."""


_FINISH = {N.FINISH_STOP: "stop", N.FINISH_LENGTH: "length", N.FINISH_CANCELLED: "cancelled"}


class Engine(_Handle):
    """Continuous batching over a paged KV cache (include/llamac.h, "many requests at once"). One thread at a
    time steps it; submit, cancel and step take the engine's lock, so several Python threads may share one."""

    _free = staticmethod(N.lib.llamac_engine_free)

    def __init__(self, model, max_seqs=0, n_ctx=0, kv_mem=0, kv_tokens=0, kv_type="f32", n_threads=0, step_tokens=0,
                 block_size=0, prefix_cache=True):
        p = N.EngineParams(n_threads=_check_int("n_threads", n_threads, 0),
                           max_seqs=_check_int("max_seqs", max_seqs, 0),
                           n_ctx=_check_int("n_ctx", n_ctx, 0), kv_mem=_check_int("kv_mem", parse_size(kv_mem), 0),
                           kv_tokens=_check_int("kv_tokens", kv_tokens, 0),
                           block_size=_check_int("block_size", block_size, 0),
                           step_tokens=_check_int("step_tokens", step_tokens, 0),
                           no_prefix_cache=not prefix_cache, kv_type=_kv_type(kv_type))
        err = N.Error()
        ptr = N.lib.llamac_engine_create(model.ptr, byref(p), byref(err))
        if not ptr:
            raise N.fail(err)
        super().__init__(ptr, model)
        self.model = model
        self.lock = threading.RLock()
        self._mail = {}  # request id -> events not yet taken, for run() and stream()
        self.n_ctx = self.stats().n_ctx

    def submit(self, prompt_ids, max_tokens=0, sampling=None, stop=(), ignore_eos=False, separate_text=False,
               presence_penalty=0.0, frequency_penalty=0.0, logit_bias=None, logprobs=False, top_logprobs=0,
               _mailbox=False):
        """Queues a request (prompt as ids, BOS included if wanted); returns its id."""
        ids = list(prompt_ids)
        r = N.Request()
        prompt = (c_int32 * max(1, len(ids)))(*ids)
        r.prompt, r.n_prompt = prompt, len(ids)
        r.max_tokens = _check_int("max_tokens", max_tokens, 0)
        r.sampling = sampling if sampling is not None else sampler_params()
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        stops = [_utf8(s) for s in (stop or [])]
        if len(stops) > N.MAX_STOP:
            raise LlamacError("at most %d stop strings (got %d)" % (N.MAX_STOP, len(stops)))
        for s in stops:
            if b"\0" in s:
                raise LlamacError("a stop string contains a NUL character")
            if not s or len(s) > N.MAX_STOP_LEN:
                raise LlamacError("a stop string must be 1 to %d bytes (got %d)" % (N.MAX_STOP_LEN, len(s)))
        stop_arr = (c_char_p * max(1, len(stops)))(*stops)
        r.stop, r.n_stop = stop_arr, len(stops)
        r.ignore_eog, r.separate_text = bool(ignore_eos), bool(separate_text)
        r.presence_penalty = _check_float("presence_penalty", presence_penalty)
        r.frequency_penalty = _check_float("frequency_penalty", frequency_penalty)
        bias = dict(logit_bias or {})
        bias_ids = (c_int32 * max(1, len(bias)))()
        bias_vals = (c_float * max(1, len(bias)))()
        for i, (k, v) in enumerate(bias.items()):
            bias_ids[i] = _check_int("logit_bias token", int(k), 0, self.model.n_vocab - 1)
            bias_vals[i] = _check_float("logit_bias value", v)
        r.logit_bias_ids, r.logit_bias, r.n_logit_bias = bias_ids, bias_vals, len(bias)
        r.logprobs = bool(logprobs) or top_logprobs > 0
        r.top_logprobs = _check_int("top_logprobs", top_logprobs, 0, N.MAX_TOP_LOGPROBS)
        err = N.Error()
        with self.lock:
            rid = N.lib.llamac_engine_submit(self.ptr, byref(r), byref(err))
            if rid >= 0 and _mailbox:
                self._mail[rid] = []
        if rid < 0:
            raise N.fail(err)
        return rid

    def cancel(self, request):
        with self.lock:
            N.lib.llamac_engine_cancel(self.ptr, request)

    def pending(self):
        with self.lock:
            return N.lib.llamac_engine_pending(self.ptr)

    def step(self):
        """Runs one step; returns its events as SimpleNamespaces (request, token, text bytes, finish: None or
        "stop"/"length"/"cancelled", cached_tokens, logprob, top: [(id, logprob)]). Events of requests that
        run() or stream() are waiting for go to them as well."""
        n = c_int()
        err = N.Error()
        with self.lock:
            ev = N.lib.llamac_engine_step(self.ptr, byref(n), byref(err))
            if not ev:
                raise N.fail(err)
            out = []
            for i in range(n.value):
                e = ev[i]
                out.append(SimpleNamespace(
                    request=e.request, token=e.token,
                    text=ctypes.string_at(e.text, e.text_len) if e.text_len else b"",
                    finish=_FINISH.get(e.finish), cached_tokens=e.cached_tokens, logprob=e.logprob,
                    top=[(e.top_ids[j], e.top_logprobs[j]) for j in range(e.n_top)]))
                box = self._mail.get(e.request)
                if box is not None:
                    box.append(out[-1])
            return out

    def _take(self, rid):
        """The events of request rid collected so far (by any thread's step); forgets the request after its
        last event."""
        with self.lock:
            box = self._mail.get(rid)
            if box is None:
                return []
            if box and box[-1].finish:
                del self._mail[rid]
            else:
                self._mail[rid] = []
            return box

    def stats(self):
        s = N.EngineStats()
        with self.lock:
            N.lib.llamac_engine_get_stats(self.ptr, byref(s))
        return SimpleNamespace(**{name: getattr(s, name) for name, _ in N.EngineStats._fields_})

    def run(self, requests, progress=None):
        """Submits every request (dicts of submit's arguments), steps until all finish, and returns their
        Completions in the same order. progress(done, total) is called as requests finish. Other threads may
        use the engine meanwhile (their requests share the steps). On an exception (KeyboardInterrupt
        included) the requests still running are cancelled."""
        ids = []
        results = {}
        try:
            for req in requests:
                rid = self.submit(_mailbox=True, **req)
                ids.append(rid)
                results[rid] = Completion(token_ids=[], text=b"", finish_reason=None, n_prompt=len(req["prompt_ids"]),
                                          cached_tokens=0, logprobs=[] if req.get("logprobs") else None)
            unfinished = set(ids)
            while unfinished:
                self.step()
                for rid in list(unfinished):
                    for e in self._take(rid):
                        self._apply(results[rid], e)
                    if results[rid].finish_reason:
                        unfinished.discard(rid)
                        if progress:
                            progress(len(ids) - len(unfinished), len(ids))
        except BaseException:
            self._abandon([rid for rid in ids if results[rid].finish_reason is None])
            raise
        out = []
        for rid in ids:
            c = results[rid]
            c.text = c.text.decode("utf-8", "replace")
            out.append(c)
        return out

    def stream(self, **req):
        """Submits one request and yields its events as they come (the last one has finish set); closing the
        generator early cancels the request."""
        rid = self.submit(_mailbox=True, **req)
        finished = False
        try:
            while not finished:
                self.step()
                for e in self._take(rid):
                    finished = finished or bool(e.finish)
                    yield e
        finally:
            if not finished:
                self._abandon([rid])

    def _abandon(self, rids):
        """Cancels requests and steps until their finish events came (their KV blocks are free then)."""
        for rid in rids:
            self.cancel(rid)
        left = set(rids)
        while left and self.pending():
            self.step()
            for rid in list(left):
                if any(e.finish for e in self._take(rid)):
                    left.discard(rid)
        with self.lock:
            for rid in rids:
                self._mail.pop(rid, None)

    @staticmethod
    def _apply(c, e):
        if e.token >= 0:
            c.token_ids.append(e.token)
            if c.logprobs is not None:
                c.logprobs.append((e.logprob, e.top))
        c.text += e.text
        if e.cached_tokens:
            c.cached_tokens = e.cached_tokens
        if e.finish:
            c.finish_reason = e.finish


class EngineFront:
    """What the high-level shapes (Llama, LLM, LLaMa, LlamaInference) share: a model and the engine that runs
    it (self._model, self._engine), freed by close() or a `with` block."""

    def close(self):
        self._engine.close()
        self._model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_size(v):
    """Bytes from an int or a string like "512M", "4G" (powers of 1024, as `llamac --kv-mem`)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().upper().rstrip("B").rstrip("I")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(s[-1:], 1)
        num = s[:-1] if mult != 1 else s
        try:
            value = float(num)
        except ValueError:
            raise LlamacError("bad size %r (expected a number of bytes or e.g. 512M, 4G)" % v) from None
        if not value >= 0 or value * mult > 2**63:
            raise LlamacError("bad size %r" % v)
        return int(value * mult)
    raise TypeError("size must be an int or a string like '4G', got %r" % (v,))
