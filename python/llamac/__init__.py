"""llamac from Python: the C library through ctypes, in the shapes people already write.

    import llamac
    llamac.Model, llamac.Tokenizer, llamac.Session, llamac.Sampler, llamac.Engine   # llamac's own objects
    llamac.Llama                       # llama-cpp-python's Llama
    llamac.LLM, llamac.SamplingParams  # vLLM's offline API
    llamac.LLaMa                       # seed 004's LLaMa.build / text_completion
    llamac.LlamaInference              # seed 001's LlamaInference

The shared library is found beside this package, in the repository's build/ folder, or at $LLAMAC_LIB.
"""
from ._native import LlamacError
from .core import Completion, Detokenizer, Engine, Model, Sampler, Session, Tokenizer, estimate_memory, isa, sampler_params
from .llama_cpp import Llama
from .seeds import LLaMa, LlamaInference
from .vllm import LLM, CompletionOutput, Logprob, RequestOutput, SamplingParams

__all__ = ["LlamacError", "Model", "Tokenizer", "Detokenizer", "Session", "Sampler", "Engine", "Completion", "isa",
           "estimate_memory",
           "sampler_params", "Llama", "LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob", "LLaMa",
           "LlamaInference"]
