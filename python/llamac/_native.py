"""The C library through ctypes: finding libllamac.so, the structs of include/llamac.h, the prototypes.

Every struct here mirrors one of include/llamac.h field by field; python/tests/test_abi.py compiles a C
program that prints the C compiler's sizes and offsets and compares them with these, so a header change
that is not made here too fails the tests instead of corrupting memory.

ctypes.CDLL releases the GIL for the duration of every call, so a forward pass in one Python thread
does not stop the others.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_ubyte, c_uint64, c_void_p)

_HERE = os.path.dirname(os.path.abspath(__file__))


class LlamacError(ValueError):
    """An error reported by the llamac library (its one-line message), or a bad argument.

    A ValueError, as llama-cpp-python raises for a model that does not load or a prompt over the context."""


def _candidates():
    env = os.environ.get("LLAMAC_LIB")
    if env:
        return [env]
    repo = os.path.dirname(os.path.dirname(_HERE))
    return [os.path.join(_HERE, "libllamac.so"), os.path.join(repo, "build", "libllamac.so")]


def _load():
    tried = []
    for path in _candidates():
        if os.path.isfile(path):
            return ctypes.CDLL(path)
        tried.append(path)
    raise ImportError("llamac: libllamac.so not found (looked at %s); build it with "
                      "`cmake -B build && cmake --build build` or set LLAMAC_LIB" % ", ".join(tried))


class Error(Structure):
    _fields_ = [("message", c_char * 512)]


class ModelParams(Structure):
    _fields_ = [("tokenizer_path", c_char_p)]


class ModelInfo(Structure):
    _fields_ = [("n_layers", c_int), ("dim", c_int), ("n_heads", c_int), ("n_kv_heads", c_int),
                ("head_dim", c_int), ("ffn_dim", c_int), ("n_vocab", c_int), ("n_ctx_train", c_int),
                ("rope_dim", c_int), ("rms_eps", c_float), ("rope_theta", c_float),
                ("has_rope_freqs", c_bool), ("tied_output", c_bool),
                ("format", c_char_p), ("name", c_char_p), ("weight_type", c_char_p),
                ("weight_bytes", c_uint64), ("n_params", c_uint64), ("decode_bytes", c_uint64),
                ("matmul_macs", c_uint64), ("default_temperature", c_float), ("default_top_p", c_float)]


class TensorInfo(Structure):
    _fields_ = [("name", c_char * 64), ("type", c_char_p), ("cols", c_int64), ("rows", c_int64),
                ("bytes", c_uint64), ("tied", c_bool)]


# bool (*progress)(void *user, const llamac_tensor_info *, uint64_t done_bytes, uint64_t total_bytes)
SAVE_PROGRESS = ctypes.CFUNCTYPE(c_bool, c_void_p, POINTER(TensorInfo), c_uint64, c_uint64)


class SaveParams(Structure):
    _fields_ = [("type", c_char_p), ("n_threads", c_int), ("format", c_char_p), ("progress", SAVE_PROGRESS),
                ("user", c_void_p)]


class SaveStats(Structure):
    _fields_ = [("n_tensors", c_int), ("bytes", c_uint64), ("n_elements", c_uint64), ("n_threads", c_int),
                ("file_type", c_char_p)]


class Detokenizer(Structure):
    _fields_ = [("tok", c_void_p), ("prev", c_int32), ("pending", c_ubyte * 8), ("n_pending", c_int)]


class SessionParams(Structure):
    _fields_ = [("n_ctx", c_int), ("n_threads", c_int), ("kv_type", c_int)]


class SamplerParams(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int), ("seed", c_uint64)]


class ChatMessage(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p), ("ids", POINTER(c_int32)), ("n_ids", c_int)]


class EngineParams(Structure):
    _fields_ = [("n_threads", c_int), ("max_seqs", c_int), ("n_ctx", c_int), ("kv_mem", c_uint64),
                ("kv_tokens", c_int), ("block_size", c_int), ("step_tokens", c_int),
                ("no_prefix_cache", c_bool), ("kv_type", c_int)]


class Request(Structure):
    _fields_ = [("prompt", POINTER(c_int32)), ("n_prompt", c_int), ("max_tokens", c_int),
                ("sampling", SamplerParams), ("stop", POINTER(c_char_p)), ("n_stop", c_int),
                ("ignore_eog", c_bool), ("separate_text", c_bool),
                ("presence_penalty", c_float), ("frequency_penalty", c_float),
                ("logit_bias_ids", POINTER(c_int32)), ("logit_bias", POINTER(c_float)), ("n_logit_bias", c_int),
                ("logprobs", c_bool), ("top_logprobs", c_int)]


MAX_TOP_LOGPROBS = 20
MAX_STOP = 64
MAX_STOP_LEN = 256


class Event(Structure):
    _fields_ = [("request", c_int), ("token", c_int32), ("text", c_void_p), ("text_len", c_size_t),
                ("finish", c_int), ("cached_tokens", c_int), ("logprob", c_float), ("n_top", c_int),
                ("top_ids", c_int32 * MAX_TOP_LOGPROBS), ("top_logprobs", c_float * MAX_TOP_LOGPROBS)]


class EngineStats(Structure):
    _fields_ = [("steps", c_uint64), ("prompt_tokens", c_uint64), ("prompt_tokens_cached", c_uint64),
                ("generated_tokens", c_uint64), ("preemptions", c_uint64), ("computed_tokens", c_uint64),
                ("kv_blocks", c_int), ("kv_blocks_used", c_int), ("block_size", c_int), ("kv_blocks_peak", c_int),
                ("kv_waste_blocks", c_double), ("kv_waste_max", c_int), ("running", c_int), ("waiting", c_int),
                ("n_ctx", c_int)]


# Every struct the header declares, by its C name (the ABI test walks this).
class TypeShare(Structure):
    _fields_ = [("type", c_char_p), ("n_tensors", c_int), ("bytes", c_uint64), ("n_elements", c_uint64)]


class ModelShape(Structure):
    _fields_ = [("n_layers", c_int), ("dim", c_int), ("n_heads", c_int), ("n_kv_heads", c_int), ("ffn_dim", c_int),
                ("n_vocab", c_int), ("n_ctx_train", c_int), ("tied", c_bool), ("rope_freqs", c_bool), ("type", c_char_p),
                ("n_merges", c_int)]


class MemoryParams(Structure):
    _fields_ = [("n_ctx", c_int), ("n_seqs", c_int), ("type", c_char_p), ("kv_type", c_int)]


class MemoryEstimate(Structure):
    _fields_ = [("weights", c_uint64), ("embedding_by_row", c_uint64), ("kv_cache", c_uint64), ("scratch", c_uint64),
                ("tokenizer", c_uint64), ("total", c_uint64), ("types", TypeShare * 64), ("n_types", c_int),
                ("n_params", c_uint64), ("shape", ModelShape), ("n_ctx", c_int), ("n_seqs", c_int), ("kv_type", c_char_p)]


STRUCTS = {
    "llamac_type_share": TypeShare, "llamac_model_shape": ModelShape, "llamac_memory_params": MemoryParams,
    "llamac_memory_estimate": MemoryEstimate,
    "llamac_error": Error, "llamac_model_params": ModelParams, "llamac_model_info": ModelInfo,
    "llamac_tensor_info": TensorInfo, "llamac_save_params": SaveParams, "llamac_save_stats": SaveStats,
    "llamac_detokenizer": Detokenizer, "llamac_session_params": SessionParams,
    "llamac_sampler_params": SamplerParams, "llamac_chat_message": ChatMessage,
    "llamac_engine_params": EngineParams, "llamac_request": Request, "llamac_event": Event,
    "llamac_engine_stats": EngineStats,
}

FINISH_RUNNING, FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED = 0, 1, 2, 3
KV_TYPES = {"f32": 0, "f16": 1, "bf16": 2, "q8_0": 3}
CHAT_FORMATS = {"auto": 0, "llama3": 1, "llama2": 2}

lib = _load()

_ERR = POINTER(Error)
_PROTOTYPES = {
    "llamac_model_load": (c_void_p, [c_char_p, POINTER(ModelParams), _ERR]),
    "llamac_model_free": (None, [c_void_p]),
    "llamac_model_get_info": (None, [c_void_p, POINTER(ModelInfo)]),
    "llamac_model_tokenizer": (c_void_p, [c_void_p]),
    "llamac_model_kv_bytes": (c_uint64, [c_void_p, c_int, c_int]),
    "llamac_model_n_tensors": (c_int, [c_void_p]),
    "llamac_model_tensor": (c_bool, [c_void_p, c_int, POINTER(TensorInfo)]),
    "llamac_model_save": (c_bool, [c_void_p, c_char_p, POINTER(SaveParams), POINTER(SaveStats), _ERR]),
    "llamac_save_type_known": (c_bool, [c_char_p]),
    "llamac_save_type_names": (c_char_p, []),
    "llamac_isa": (c_char_p, []),
    "llamac_tokenizer_load": (c_void_p, [c_char_p, _ERR]),
    "llamac_tokenizer_free": (None, [c_void_p]),
    "llamac_tokenize": (c_int, [c_void_p, c_char_p, c_size_t, c_bool, c_bool, POINTER(c_int32), c_int, _ERR]),
    "llamac_tokenizer_n_vocab": (c_int, [c_void_p]),
    "llamac_tokenizer_bos": (c_int32, [c_void_p]),
    "llamac_tokenizer_eos": (c_int32, [c_void_p]),
    "llamac_tokenizer_is_eog": (c_bool, [c_void_p, c_int32]),
    "llamac_token_bytes": (c_size_t, [c_void_p, c_int32, POINTER(c_void_p)]),
    "llamac_tokenizer_chat_template": (c_char_p, [c_void_p]),
    "llamac_tokenizer_token_id": (c_int32, [c_void_p, c_char_p]),
    "llamac_detokenizer_init": (None, [POINTER(Detokenizer), c_void_p]),
    "llamac_detokenize": (c_size_t, [POINTER(Detokenizer), c_int32, c_char_p, c_size_t]),
    "llamac_detokenizer_max_bytes": (c_size_t, [c_void_p]),
    "llamac_detokenizer_flush": (c_size_t, [POINTER(Detokenizer), c_char_p, c_size_t]),
    "llamac_session_create": (c_void_p, [c_void_p, POINTER(SessionParams), _ERR]),
    "llamac_session_free": (None, [c_void_p]),
    "llamac_session_eval": (POINTER(c_float), [c_void_p, POINTER(c_int32), c_int, _ERR]),
    "llamac_session_eval_all": (c_int, [c_void_p, POINTER(c_int32), c_int, POINTER(c_float), _ERR]),
    "llamac_session_pos": (c_int, [c_void_p]),
    "llamac_session_n_ctx": (c_int, [c_void_p]),
    "llamac_session_truncate": (None, [c_void_p, c_int]),
    "llamac_sampler_defaults": (SamplerParams, []),
    "llamac_sampler_create": (c_void_p, [POINTER(SamplerParams), c_int, _ERR]),
    "llamac_sampler_free": (None, [c_void_p]),
    "llamac_sampler_sample": (c_int32, [c_void_p, POINTER(c_float)]),
    "llamac_sampler_accept": (None, [c_void_p, c_int32]),
    "llamac_chat_format_detect": (c_int, [c_void_p]),
    "llamac_chat_tokenize": (c_int, [c_void_p, c_int, POINTER(ChatMessage), c_int, c_bool, POINTER(c_int32),
                                     c_int, _ERR]),
    "llamac_engine_create": (c_void_p, [c_void_p, POINTER(EngineParams), _ERR]),
    "llamac_engine_free": (None, [c_void_p]),
    "llamac_engine_submit": (c_int, [c_void_p, POINTER(Request), _ERR]),
    "llamac_engine_cancel": (None, [c_void_p, c_int]),
    "llamac_engine_step": (POINTER(Event), [c_void_p, POINTER(c_int), _ERR]),
    "llamac_engine_pending": (c_int, [c_void_p]),
    "llamac_engine_get_stats": (None, [c_void_p, POINTER(EngineStats)]),
    "llamac_estimate_memory": (c_bool, [c_char_p, POINTER(MemoryParams), POINTER(MemoryEstimate), _ERR]),
    "llamac_estimate_memory_gguf": (c_bool, [c_char_p, c_size_t, POINTER(MemoryParams), POINTER(MemoryEstimate), _ERR]),
    "llamac_estimate_memory_hf_config": (c_bool, [c_char_p, c_size_t, c_char_p, POINTER(MemoryParams), POINTER(MemoryEstimate),
                                                  _ERR]),
}
for _name, (_res, _args) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args


def fail(err):
    """The LlamacError for a filled llamac_error."""
    return LlamacError(err.message.decode("utf-8", "replace") or "llamac: unknown error")


def int_array(values):
    arr = (c_int32 * max(1, len(values)))()
    for i, v in enumerate(values):
        arr[i] = v
    return arr
