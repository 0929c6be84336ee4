"""The two seed projects' Python APIs, on llamac.

Seed 004 (a PyTorch Llama 2 on Meta's checkpoints):

    from llamac import LLaMa                     # instead of: from inference import LLaMa
    model = LLaMa.build(checkpoints_dir="llama-2-7b/", tokenizer_path="tokenizer.model", load_model=True,
                        max_seq_len=1024, max_batch_size=2, device="cpu")
    out_tokens, out_text = model.text_completion(prompts, temperature=0.6, top_p=0.9, max_gen_len=64)

Seed 001 (a Llama 3.2 inference kernel over Hugging Face checkpoints):

    from llamac import LlamaInference            # instead of: from llama_kernel import LlamaInference
    model = LlamaInference(model_id="path/to/Llama-3.2-1B-Instruct", device="cpu")
    print(model.generate("What is the capital of France?", max_length=512, temperature=0.7))
    print(model.estimate_memory())
"""
from . import core
from .core import LlamacError


def _cpu_only(device):
    if device not in ("cpu", None):
        raise LlamacError("llamac runs on the CPU: device=%r is not available (use device='cpu')" % (device,))


class LLaMa(core.EngineFront):
    """Seed 004's LLaMa: build() from a checkpoint folder and a tokenizer file, then text_completion()."""

    def __init__(self, model, max_seq_len, max_batch_size, seed):
        self.model = self._model = model
        self.tokenizer = model.tokenizer
        self.max_seq_len = max_seq_len
        self.max_batch_size = max_batch_size
        self._engine = core.Engine(model, max_seqs=max_batch_size, n_ctx=max_seq_len,
                                   kv_tokens=max_seq_len * max_batch_size)
        self._seed = seed

    @staticmethod
    def build(checkpoints_dir, tokenizer_path, load_model=True, max_seq_len=2048, max_batch_size=1, device="cpu",
              seed=1):
        """checkpoints_dir: a Meta folder (params.json + consolidated.*.pth), or any model llamac loads;
        tokenizer_path: its tokenizer.model. max_seq_len: positions of each sequence's KV cache;
        max_batch_size: most prompts per text_completion call."""
        _cpu_only(device)
        if not load_model:
            raise LlamacError("load_model=False (a randomly initialised model) is not supported; "
                              "`llamac synth` writes random-weight models of real shapes")
        core._check_int("max_seq_len", max_seq_len, 2)
        core._check_int("max_batch_size", max_batch_size, 1)
        return LLaMa(core.Model(checkpoints_dir, tokenizer_path=tokenizer_path), max_seq_len, max_batch_size, seed)

    def text_completion(self, prompts, temperature=0.6, top_p=0.9, max_gen_len=None):
        """As the seed: each prompt (with BOS) is continued until EOS or a total length of
        min(max_seq_len, max_gen_len + longest prompt); returns (out_tokens, out_text): each prompt's tokens
        followed by its completion's (EOS and after cut), and their decoded text (prompt included)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings")
        if max_gen_len is None:
            max_gen_len = self.max_seq_len - 1
        core._check_int("max_gen_len", max_gen_len, 1)
        if len(prompts) > self.max_batch_size:
            raise LlamacError("%d prompts for max_batch_size %d" % (len(prompts), self.max_batch_size))
        toks = [self.tokenizer.tokenize(p, add_bos=True) for p in prompts]
        longest = max((len(t) for t in toks), default=0)
        if longest > self.max_seq_len:
            raise LlamacError("a prompt of %d tokens is longer than max_seq_len %d" % (longest, self.max_seq_len))
        total_len = min(self.max_seq_len, max_gen_len + longest)
        reqs = []
        for i, ids in enumerate(toks):
            sampling = core.sampler_params(temperature=temperature, top_p=top_p, top_k=0, min_p=0.0,
                                           seed=self._seed + i)
            reqs.append(dict(prompt_ids=ids, max_tokens=max(0, total_len - len(ids)), sampling=sampling))
        # A prompt that already fills total_len gets no new token (the engine's max_tokens 0 means "no limit").
        runnable = [i for i, r in enumerate(reqs) if r["max_tokens"] > 0]
        done = dict(zip(runnable, self._engine.run([reqs[i] for i in runnable]))) if runnable else {}
        out_tokens, out_text = [], []
        for i, ids in enumerate(toks):
            seq = ids + (done[i].token_ids if i in done else [])
            out_tokens.append(seq)
            out_text.append(self.tokenizer.decode(seq))
        return out_tokens, out_text


class LlamaInference(core.EngineFront):
    """Seed 001's LlamaInference: a model by id (a local checkpoint: GGUF, Hugging Face or Meta folder),
    generate() and estimate_memory()."""

    def __init__(self, model_id, device="cpu", use_flash_attention=False, n_threads=0, n_ctx=0, kv_type="f32",
                 tokenizer_path=None):
        _cpu_only(device)
        # use_flash_attention is a speed switch of the seed; llamac's attention is exact either way.
        self.use_flash_attention = use_flash_attention
        self.model_id = model_id
        self.model = self._model = core.Model(model_id, tokenizer_path=tokenizer_path)
        self.tokenizer = self.model.tokenizer
        self.kv_type = kv_type
        self._engine = core.Engine(self.model, max_seqs=1, n_ctx=n_ctx, kv_type=kv_type, n_threads=n_threads)

    def generate(self, prompt, max_length=512, temperature=0.7, top_p=0.9, seed=None):
        """The prompt and its continuation, as the seed returns them (Hugging Face's decode of the whole
        sequence): max_length counts the prompt's tokens too, as Hugging Face's generate does."""
        ids = self.tokenizer.tokenize(prompt, add_bos=True)
        core._check_int("max_length", max_length, 1)
        if len(ids) >= max_length:
            raise LlamacError("the prompt has %d tokens, max_length %d leaves none to generate"
                              % (len(ids), max_length))
        sampling = core.sampler_params(temperature=temperature, top_p=top_p, top_k=0, min_p=0.0, seed=seed)
        c = self._engine.run([dict(prompt_ids=ids, max_tokens=max_length - len(ids), sampling=sampling)])[0]
        return self.tokenizer.decode(ids + c.token_ids)

    def estimate_memory(self, n_ctx=None, batch_size=1, kv_type=None):
        """Memory the model needs: its weights (mapped from the file) and the KV cache of batch_size
        sequences of n_ctx positions (default: the engine's context)."""
        n_ctx = n_ctx or self._engine.n_ctx
        kv = self.model.kv_bytes(n_ctx, kv_type or self.kv_type) * core._check_int("batch_size", batch_size, 1)
        w = self.model.info.weight_bytes
        return {"n_params": self.model.info.n_params, "weight_type": self.model.info.weight_type,
                "weights_bytes": w, "kv_cache_bytes": kv, "total_bytes": w + kv, "n_ctx": n_ctx,
                "batch_size": batch_size, "kv_type": kv_type or self.kv_type,
                "total_gib": round((w + kv) / 2**30, 3)}
