/*
 * Restricted unpickler and torch.save archive reader (see pickle.h).
 *
 * The machine follows Python's pickle.py: a stack of objects, a stack of MARK positions (opcodes such
 * as TUPLE or SETITEMS take "everything since the last MARK", and nothing below it), and a memo
 * (BINPUT/BINGET). Objects live in an arena freed at once, so dropping a result never walks it.
 */
#include "formats/pickle.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/types.h"

/* data.pkl of the largest Meta checkpoints is well under a megabyte (a few hundred bytes a tensor). */
#define MAX_PICKLE_BYTES (64u << 20)

/* ---- objects ------------------------------------------------------------------------------------ */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_CLASS, V_DTYPE, V_STORAGE, V_TENSOR } vkind;

/* The callables and classes a torch checkpoint may name; nothing else gets past GLOBAL. */
typedef enum { C_ORDERED_DICT, C_REBUILD_TENSOR, C_REBUILD_PARAMETER, C_STORAGE } vclass;

typedef struct storage_type {
    const char *name;
    uint32_t type;      /* LLC_F32 ... or LLC_TORCH_OTHER */
    uint32_t elem_size;
} storage_type;

/* torch's typed storage classes (torch.<name>); the ones llamac computes with, then the others, which
 * may appear in a checkpoint beside the weights (step counters, masks) and are only refused when used. */
static const storage_type storage_types[] = {
    {"FloatStorage", LLC_F32, 4},          {"HalfStorage", LLC_F16, 2},         {"BFloat16Storage", LLC_BF16, 2},
    {"DoubleStorage", LLC_TORCH_OTHER, 8}, {"LongStorage", LLC_TORCH_OTHER, 8}, {"IntStorage", LLC_TORCH_OTHER, 4},
    {"ShortStorage", LLC_TORCH_OTHER, 2},  {"CharStorage", LLC_TORCH_OTHER, 1}, {"ByteStorage", LLC_TORCH_OTHER, 1},
    {"BoolStorage", LLC_TORCH_OTHER, 1},   {"UntypedStorage", LLC_TORCH_OTHER, 1},
};
#define N_STORAGE_TYPES (sizeof storage_types / sizeof storage_types[0])

/* torch.<dtype> objects: plain values here (a checkpoint may record a dtype). */
static const char *const dtype_names[] = {"float32", "float", "float16", "half", "bfloat16", "float64", "double",
                                          "int64", "long", "int32", "int", "int16", "int8", "uint8", "bool"};

typedef struct pv pv;

typedef struct pv_storage {
    const char *key;
    size_t key_len;
    uint64_t numel;
    const storage_type *st;
} pv_storage;

typedef struct pv_tensor {
    const pv_storage *storage;
    int64_t offset;
    int n_dims;
    int64_t shape[LLC_TORCH_MAX_DIMS], stride[LLC_TORCH_MAX_DIMS];
} pv_tensor;

struct pv {
    uint8_t kind;   /* vkind */
    uint8_t cls;    /* V_CLASS: vclass */
    uint16_t index; /* V_CLASS C_STORAGE: index in storage_types; V_DTYPE: index in dtype_names */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            pv **items; /* dicts: key, value, key, value, ... */
            uint32_t n, cap;
        } seq;
        const pv_storage *storage;
        const pv_tensor *tensor;
    } u;
};

/* ---- arena -------------------------------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} block;

typedef struct unpickler {
    const uint8_t *base, *p, *end;
    size_t at;           /* offset of the opcode being run, for messages */
    const char *path;
    llamac_error *err;
    block *blocks;
    size_t arena_bytes, arena_limit;
    pv **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    pv **memo;
    size_t memo_n, memo_cap;
} unpickler;

static bool fail(unpickler *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(unpickler *u, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return llc_fail(u->err, "%s: pickle: %s (opcode at byte %zu)", u->path, msg, u->at);
}

static void *arena_alloc(unpickler *u, size_t n) {
    n = (n + 15) & ~(size_t)15;
    block *b = u->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        if (u->arena_bytes + cap > u->arena_limit) {
            fail(u, "needs more than %zu MiB of memory", u->arena_limit >> 20);
            return NULL;
        }
        b = malloc(sizeof *b + cap);
        if (!b) {
            fail(u, "out of memory");
            return NULL;
        }
        b->next = u->blocks;
        b->used = 0;
        b->cap = cap;
        u->blocks = b;
        u->arena_bytes += cap;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static pv *new_value(unpickler *u, vkind kind) {
    pv *v = arena_alloc(u, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->kind = (uint8_t)kind;
    }
    return v;
}

/* ---- stack, marks, memo ------------------------------------------------------------------------- */

/* A doubled copy of a stack-like array (NULL after reporting when memory runs out). */
static void *grow(unpickler *u, void *arr, size_t *cap, size_t elem) {
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(arr, nc * elem);
    if (!p) {
        fail(u, "out of memory");
        return NULL;
    }
    *cap = nc;
    return p;
}

static bool push(unpickler *u, pv *v) {
    if (!v) return false;
    if (u->sn == u->scap) {
        pv **a = grow(u, u->stack, &u->scap, sizeof *a);
        if (!a) return false;
        u->stack = a;
    }
    u->stack[u->sn++] = v;
    return true;
}

/* Objects below the last MARK belong to an enclosing frame and are out of reach, as in pickle.py. */
static size_t frame_base(const unpickler *u) { return u->mn ? u->marks[u->mn - 1] : 0; }

static pv *pop(unpickler *u) {
    if (u->sn <= frame_base(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sn];
}

static pv *top(unpickler *u) {
    if (u->sn <= frame_base(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sn - 1];
}

/* Ends the frame of the last MARK: its objects are stack[*first .. *first + *n). */
static bool pop_mark(unpickler *u, size_t *first, size_t *n) {
    if (!u->mn) return fail(u, "no MARK to collect objects from");
    size_t b = u->marks[--u->mn];
    *first = b;
    *n = u->sn - b;
    u->sn = b;
    return true;
}

static bool memo_put(unpickler *u, uint64_t idx) {
    pv *v = top(u);
    if (!v) return false;
    /* Picklers number memo slots 0, 1, 2, ...: an index beyond the next one would make the memo as
     * large as the index says, so it is refused. */
    if (idx > u->memo_n) return fail(u, "memo index %" PRIu64 " is out of order (memo holds %zu objects)", idx, u->memo_n);
    if (idx == u->memo_n) {
        if (u->memo_n == u->memo_cap) {
            pv **a = grow(u, u->memo, &u->memo_cap, sizeof *a);
            if (!a) return false;
            u->memo = a;
        }
        u->memo_n++;
    }
    u->memo[idx] = v;
    return true;
}

static bool memo_get(unpickler *u, uint64_t idx) {
    if (idx >= u->memo_n) return fail(u, "memo index %" PRIu64 " out of range (memo holds %zu objects)", idx, u->memo_n);
    return push(u, u->memo[idx]);
}

/* ---- reading arguments -------------------------------------------------------------------------- */

static bool need(unpickler *u, uint64_t n) {
    if ((uint64_t)(u->end - u->p) < n)
        return fail(u, "truncated: an argument of %" PRIu64 " bytes runs past the end of the pickle", n);
    return true;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static bool arg_le(unpickler *u, int n, uint64_t *out) {
    if (!need(u, (uint64_t)n)) return false;
    *out = le(u->p, n);
    u->p += n;
    return true;
}

static bool push_int(unpickler *u, int64_t i) {
    pv *v = new_value(u, V_INT);
    if (v) v->u.i = i;
    return push(u, v);
}

/* LONG1/LONG4: a little-endian two's complement integer of n bytes; llamac needs no more than 64 bits. */
static bool push_long(unpickler *u, uint64_t n) {
    if (!need(u, n)) return false;
    if (n > 8) return fail(u, "integer of %" PRIu64 " bytes is too large", n);
    uint64_t v = n ? le(u->p, (int)n) : 0;
    if (n && n < 8 && (u->p[n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n);
    u->p += n;
    int64_t s;
    memcpy(&s, &v, sizeof s);
    return push_int(u, s);
}

static bool push_text(unpickler *u, vkind kind, uint64_t n) {
    if (!need(u, n)) return false;
    pv *v = new_value(u, kind);
    if (v) {
        v->u.s.p = (const char *)u->p;
        v->u.s.n = (size_t)n;
    }
    u->p += n;
    return push(u, v);
}

static pv *new_seq(unpickler *u, vkind kind, pv *const *items, size_t n) {
    if (n > UINT32_MAX / 2) {
        fail(u, "too many items");
        return NULL;
    }
    pv *v = new_value(u, kind);
    if (!v) return NULL;
    if (n) {
        v->u.seq.items = arena_alloc(u, n * sizeof *items);
        if (!v->u.seq.items) return NULL;
        memcpy(v->u.seq.items, items, n * sizeof *items);
    }
    v->u.seq.n = v->u.seq.cap = (uint32_t)n;
    return v;
}

/* Appends n items to a list or dict (dicts take key/value pairs), doubling its arena array. */
static bool seq_append(unpickler *u, pv *dst, pv *const *items, size_t n) {
    if (n == 0) return true;
    uint64_t want = (uint64_t)dst->u.seq.n + n;
    if (want > UINT32_MAX / 2) return fail(u, "too many items");
    if (want > dst->u.seq.cap) {
        uint64_t cap = dst->u.seq.cap ? dst->u.seq.cap : 4;
        while (cap < want) cap *= 2;
        pv **a = arena_alloc(u, (size_t)cap * sizeof *a);
        if (!a) return false;
        if (dst->u.seq.n) memcpy(a, dst->u.seq.items, dst->u.seq.n * sizeof *a);
        dst->u.seq.items = a;
        dst->u.seq.cap = (uint32_t)cap;
    }
    memcpy(dst->u.seq.items + dst->u.seq.n, items, n * sizeof *items);
    dst->u.seq.n += (uint32_t)n;
    return true;
}

static const char *kind_name(const pv *v) {
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "class", "dtype", "storage", "tensor"};
    return names[v->kind];
}

static bool str_is(const pv *v, const char *s) {
    return v->kind == V_STR && v->u.s.n == strlen(s) && memcmp(v->u.s.p, s, v->u.s.n) == 0;
}

/* ---- GLOBAL: the allow-list --------------------------------------------------------------------- */

static bool eq(const char *s, size_t n, const char *lit) { return n == strlen(lit) && memcmp(s, lit, n) == 0; }

static bool push_global(unpickler *u, const char *mod, size_t mn, const char *name, size_t nn) {
    int cls = -1, storage = -1, dtype = -1;
    if (eq(mod, mn, "collections") && eq(name, nn, "OrderedDict")) cls = C_ORDERED_DICT;
    else if (eq(mod, mn, "torch._utils") && eq(name, nn, "_rebuild_tensor_v2")) cls = C_REBUILD_TENSOR;
    else if (eq(mod, mn, "torch._utils") && eq(name, nn, "_rebuild_parameter")) cls = C_REBUILD_PARAMETER;
    else if (eq(mod, mn, "torch") || eq(mod, mn, "torch.storage")) {
        for (size_t i = 0; i < N_STORAGE_TYPES; i++)
            if (eq(name, nn, storage_types[i].name) && (eq(mod, mn, "torch") || !strcmp(storage_types[i].name, "UntypedStorage")))
                storage = (int)i;
        for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
            if (eq(mod, mn, "torch") && eq(name, nn, dtype_names[i])) dtype = (int)i;
        if (storage >= 0) cls = C_STORAGE;
    }
    if (cls < 0 && dtype < 0) {
        char a[80], b[80];
        return llc_fail(u->err, "refusing to load %s: pickle asks for %s.%s (only torch tensor classes are allowed)",
                        u->path, llc_clip(mod, mn, 60, a, sizeof a), llc_clip(name, nn, 60, b, sizeof b));
    }
    pv *v = new_value(u, cls >= 0 ? V_CLASS : V_DTYPE);
    if (!v) return false;
    v->cls = (uint8_t)(cls >= 0 ? cls : 0);
    v->index = (uint16_t)(cls == C_STORAGE ? storage : dtype >= 0 ? dtype : 0);
    return push(u, v);
}

/* GLOBAL's argument: "module\nname\n". */
static bool op_global(unpickler *u) {
    const char *lines[2];
    size_t lens[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *nl = memchr(u->p, '\n', (size_t)(u->end - u->p));
        if (!nl) return fail(u, "truncated GLOBAL (no end of line)");
        lines[k] = (const char *)u->p;
        lens[k] = (size_t)(nl - u->p);
        u->p = nl + 1;
    }
    return push_global(u, lines[0], lens[0], lines[1], lens[1]);
}

/* ---- REDUCE: the allowed calls ------------------------------------------------------------------ */

static bool int_arg(unpickler *u, const pv *v, const char *what, int64_t *out) {
    if (v->kind == V_INT) *out = v->u.i;
    else if (v->kind == V_BOOL) *out = v->u.i;
    else return fail(u, "%s is a %s, not an int", what, kind_name(v));
    return true;
}

static bool int_tuple(unpickler *u, const pv *v, const char *what, int64_t *out, int *n) {
    if (v->kind != V_TUPLE) return fail(u, "tensor %s is a %s, not a tuple", what, kind_name(v));
    if (v->u.seq.n > LLC_TORCH_MAX_DIMS) return fail(u, "tensor %s has %u dimensions (at most %d)", what, v->u.seq.n, LLC_TORCH_MAX_DIMS);
    for (uint32_t i = 0; i < v->u.seq.n; i++)
        if (!int_arg(u, v->u.seq.items[i], what, &out[i])) return false;
    *n = (int)v->u.seq.n;
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static pv *rebuild_tensor(unpickler *u, const pv *args) {
    if (args->u.seq.n != 6 && args->u.seq.n != 7) {
        fail(u, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %u", args->u.seq.n);
        return NULL;
    }
    pv *const *a = args->u.seq.items;
    if (a[0]->kind != V_STORAGE) {
        fail(u, "_rebuild_tensor_v2's storage is a %s", kind_name(a[0]));
        return NULL;
    }
    pv_tensor *t = arena_alloc(u, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->storage = a[0]->u.storage;
    int ns = 0;
    if (!int_arg(u, a[1], "tensor storage offset", &t->offset) || !int_tuple(u, a[2], "size", t->shape, &t->n_dims) ||
        !int_tuple(u, a[3], "stride", t->stride, &ns))
        return NULL;
    if (ns != t->n_dims) {
        fail(u, "tensor has %d sizes but %d strides", t->n_dims, ns);
        return NULL;
    }
    pv *v = new_value(u, V_TENSOR);
    if (v) v->u.tensor = t;
    return v;
}

static bool op_reduce(unpickler *u) {
    pv *args = pop(u), *fn = args ? pop(u) : NULL;
    if (!fn) return false;
    if (args->kind != V_TUPLE) return fail(u, "call arguments are a %s, not a tuple", kind_name(args));
    if (fn->kind != V_CLASS) return fail(u, "calling a %s", kind_name(fn));
    pv *r = NULL;
    switch ((vclass)fn->cls) {
    case C_ORDERED_DICT:
        if (args->u.seq.n != 0) return fail(u, "OrderedDict with initial items is not supported");
        r = new_value(u, V_DICT);
        break;
    case C_REBUILD_TENSOR:
        r = rebuild_tensor(u, args);
        break;
    case C_REBUILD_PARAMETER:
        /* _rebuild_parameter(data, requires_grad, backward_hooks): the parameter is its tensor. */
        if (args->u.seq.n < 1 || args->u.seq.items[0]->kind != V_TENSOR)
            return fail(u, "_rebuild_parameter needs a tensor as its first argument");
        r = args->u.seq.items[0];
        break;
    case C_STORAGE:
        return fail(u, "calling torch.%s is not supported", storage_types[fn->index].name);
    }
    return push(u, r);
}

/* BINPERSID: torch.save replaces each storage by the persistent id
 * ('storage', storage_type, key, location, numel); its bytes are the archive entry data/<key>. */
static bool op_persid(unpickler *u) {
    pv *pid = pop(u);
    if (!pid) return false;
    if (pid->kind != V_TUPLE || pid->u.seq.n != 5 || !str_is(pid->u.seq.items[0], "storage"))
        return fail(u, "persistent id is not a ('storage', type, key, location, size) tuple");
    pv *const *a = pid->u.seq.items;
    if (a[1]->kind != V_CLASS || a[1]->cls != C_STORAGE) return fail(u, "persistent id names no storage type");
    if (a[2]->kind != V_STR || a[2]->u.s.n == 0 || a[2]->u.s.n > 200) return fail(u, "storage key is not a short string");
    for (size_t i = 0; i < a[2]->u.s.n; i++)
        if (a[2]->u.s.p[i] == '/' || a[2]->u.s.p[i] == 0) return fail(u, "storage key contains '/' or NUL");
    int64_t numel = 0;
    if (!int_arg(u, a[4], "storage size", &numel)) return false;
    if (numel < 0 || (uint64_t)numel > (UINT64_MAX >> 4)) return fail(u, "storage size %" PRId64 " is invalid", numel);
    pv_storage *s = arena_alloc(u, sizeof *s);
    pv *v = s ? new_value(u, V_STORAGE) : NULL;
    if (!v) return false;
    s->key = a[2]->u.s.p;
    s->key_len = a[2]->u.s.n;
    s->numel = (uint64_t)numel;
    s->st = &storage_types[a[1]->index];
    v->u.storage = s;
    return push(u, v);
}

/* ---- the machine -------------------------------------------------------------------------------- */

static pv *run(unpickler *u) {
    pv *none = new_value(u, V_NONE), *yes = new_value(u, V_BOOL), *no = new_value(u, V_BOOL);
    if (!none || !yes || !no) return NULL;
    yes->u.i = 1;
    for (;;) {
        if (u->p >= u->end) {
            u->at = (size_t)(u->p - u->base);
            fail(u, "truncated: the pickle ends before its STOP opcode");
            return NULL;
        }
        u->at = (size_t)(u->p - u->base);
        uint8_t op = *u->p++;
        uint64_t n = 0;
        size_t first = 0, cnt = 0;
        pv *v = NULL, *k = NULL, *d = NULL;
        bool ok = true;
        switch (op) {
        case 0x80: /* PROTO */
            ok = arg_le(u, 1, &n) && (n <= 5 || fail(u, "pickle protocol %" PRIu64 " is not supported", n));
            break;
        case 0x95: /* FRAME: a length prefix for buffered reading; the bytes are all here already */
            ok = arg_le(u, 8, &n) && (n <= (uint64_t)(u->end - u->p) || fail(u, "frame of %" PRIu64 " bytes runs past the end", n));
            break;
        case '.': /* STOP */
            return pop(u);
        case '(': /* MARK */
            if (u->mn == u->mcap) {
                size_t *a = grow(u, u->marks, &u->mcap, sizeof *a);
                if (!a) return NULL;
                u->marks = a;
            }
            u->marks[u->mn++] = u->sn;
            break;
        case 'N': ok = push(u, none); break;
        case 0x88: ok = push(u, yes); break;
        case 0x89: ok = push(u, no); break;
        case 'K': ok = arg_le(u, 1, &n) && push_int(u, (int64_t)n); break;
        case 'M': ok = arg_le(u, 2, &n) && push_int(u, (int64_t)n); break;
        case 'J': ok = arg_le(u, 4, &n) && push_int(u, (int64_t)(int32_t)(uint32_t)n); break;
        case 0x8a: ok = arg_le(u, 1, &n) && push_long(u, n); break; /* LONG1 */
        case 0x8b: ok = arg_le(u, 4, &n) && push_long(u, n); break; /* LONG4 */
        case 'G': /* BINFLOAT: big-endian double */
            if ((ok = need(u, 8))) {
                uint64_t bits = 0;
                for (int i = 0; i < 8; i++) bits = bits << 8 | u->p[i];
                u->p += 8;
                v = new_value(u, V_FLOAT);
                if (v) memcpy(&v->u.f, &bits, sizeof bits);
                ok = push(u, v);
            }
            break;
        case 'X': ok = arg_le(u, 4, &n) && push_text(u, V_STR, n); break;    /* BINUNICODE */
        case 0x8c: ok = arg_le(u, 1, &n) && push_text(u, V_STR, n); break;   /* SHORT_BINUNICODE */
        case 0x8d: ok = arg_le(u, 8, &n) && push_text(u, V_STR, n); break;   /* BINUNICODE8 */
        case 'T': /* BINSTRING (signed length) */
            ok = arg_le(u, 4, &n) && ((int32_t)(uint32_t)n >= 0 || fail(u, "negative string length")) && push_text(u, V_STR, n);
            break;
        case 'U': ok = arg_le(u, 1, &n) && push_text(u, V_STR, n); break;    /* SHORT_BINSTRING */
        case 'B': ok = arg_le(u, 4, &n) && push_text(u, V_BYTES, n); break;  /* BINBYTES */
        case 'C': ok = arg_le(u, 1, &n) && push_text(u, V_BYTES, n); break;  /* SHORT_BINBYTES */
        case 0x8e: ok = arg_le(u, 8, &n) && push_text(u, V_BYTES, n); break; /* BINBYTES8 */
        case '}': ok = push(u, new_value(u, V_DICT)); break;
        case ']': ok = push(u, new_value(u, V_LIST)); break;
        case ')': ok = push(u, new_seq(u, V_TUPLE, NULL, 0)); break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
            ok = pop_mark(u, &first, &cnt) && push(u, new_seq(u, op == 't' ? V_TUPLE : V_LIST, u->stack + first, cnt));
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
            cnt = (size_t)(op - 0x84);
            if (u->sn - frame_base(u) < cnt) ok = fail(u, "stack underflow");
            else {
                u->sn -= cnt;
                ok = push(u, new_seq(u, V_TUPLE, u->stack + u->sn, cnt));
            }
            break;
        case 'd': /* DICT */
            ok = pop_mark(u, &first, &cnt) && (cnt % 2 == 0 || fail(u, "DICT with an odd number of items")) &&
                 (v = new_value(u, V_DICT)) != NULL && seq_append(u, v, u->stack + first, cnt) && push(u, v);
            break;
        case 'a': /* APPEND */
            ok = (v = pop(u)) != NULL && (d = top(u)) != NULL &&
                 (d->kind == V_LIST || fail(u, "APPEND to a %s", kind_name(d))) && seq_append(u, d, &v, 1);
            break;
        case 'e': /* APPENDS */
            ok = pop_mark(u, &first, &cnt) && (d = top(u)) != NULL &&
                 (d->kind == V_LIST || fail(u, "APPENDS to a %s", kind_name(d))) && seq_append(u, d, u->stack + first, cnt);
            break;
        case 's': /* SETITEM */
            if ((ok = (v = pop(u)) != NULL && (k = pop(u)) != NULL && (d = top(u)) != NULL)) {
                pv *kv[2] = {k, v};
                ok = (d->kind == V_DICT || fail(u, "SETITEM on a %s", kind_name(d))) && seq_append(u, d, kv, 2);
            }
            break;
        case 'u': /* SETITEMS */
            ok = pop_mark(u, &first, &cnt) && (cnt % 2 == 0 || fail(u, "SETITEMS with an odd number of items")) &&
                 (d = top(u)) != NULL && (d->kind == V_DICT || fail(u, "SETITEMS on a %s", kind_name(d))) &&
                 seq_append(u, d, u->stack + first, cnt);
            break;
        case '0': /* POP: the top object, or an empty frame's MARK */
            if (u->sn > frame_base(u)) u->sn--;
            else if (u->mn) u->mn--;
            else ok = fail(u, "stack underflow");
            break;
        case '1': ok = pop_mark(u, &first, &cnt); break; /* POP_MARK */
        case '2': ok = (v = top(u)) != NULL && push(u, v); break; /* DUP */
        case 'q': ok = arg_le(u, 1, &n) && memo_put(u, n); break; /* BINPUT */
        case 'r': ok = arg_le(u, 4, &n) && memo_put(u, n); break; /* LONG_BINPUT */
        case 0x94: ok = memo_put(u, u->memo_n); break;           /* MEMOIZE */
        case 'h': ok = arg_le(u, 1, &n) && memo_get(u, n); break; /* BINGET */
        case 'j': ok = arg_le(u, 4, &n) && memo_get(u, n); break; /* LONG_BINGET */
        case 'c': ok = op_global(u); break;
        case 0x93: /* STACK_GLOBAL */
            ok = (v = pop(u)) != NULL && (k = pop(u)) != NULL &&
                 ((v->kind == V_STR && k->kind == V_STR) || fail(u, "STACK_GLOBAL needs two strings")) &&
                 push_global(u, k->u.s.p, k->u.s.n, v->u.s.p, v->u.s.n);
            break;
        case 'R': /* REDUCE */
        case 0x81: /* NEWOBJ: cls.__new__(cls, *args), the same for the classes allowed here */
            ok = op_reduce(u);
            break;
        case 'b': /* BUILD: sets an object's state; an OrderedDict's is its _metadata, not needed */
            ok = (v = pop(u)) != NULL && (d = top(u)) != NULL &&
                 (d->kind == V_DICT || fail(u, "BUILD on a %s is not supported", kind_name(d)));
            break;
        case 'Q': ok = op_persid(u); break; /* BINPERSID */
        default:
            if (op >= 0x20 && op < 0x7f) fail(u, "unsupported pickle opcode '%c' (0x%02x)", op, op);
            else fail(u, "unsupported pickle opcode 0x%02x", op);
            return NULL;
        }
        if (!ok) return NULL;
    }
}

/* ---- tensors out of the result ------------------------------------------------------------------ */

static int cmp_tensor(const void *a, const void *b) {
    const llc_pickle_tensor *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* Checks a tensor against its storage: contiguous row-major (llamac uses the bytes in place), inside
 * the storage. Sizes are bounded so that every byte count fits comfortably in 64 bits. */
static bool check_tensor(const char *path, const char *nm, const pv_tensor *t, llc_pickle_tensor *o, llamac_error *err) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) {
        if (t->shape[i] < 0 || t->shape[i] > ((int64_t)1 << 40))
            return llc_fail(err, "%s: tensor %s has an invalid size %" PRId64, path, nm, t->shape[i]);
        n *= (uint64_t)t->shape[i];
        if (n > ((uint64_t)1 << 56)) return llc_fail(err, "%s: tensor %s is too large", path, nm);
    }
    uint64_t expect = 1;
    for (int i = t->n_dims - 1; i >= 0 && n > 0; i--) {
        /* a dimension of size 1 can have any stride: it is never stepped over */
        if (t->shape[i] != 1 && t->stride[i] != (int64_t)expect) {
            char s[160] = "";
            size_t k = 0;
            for (int j = 0; j < t->n_dims && k < sizeof s - 24; j++)
                k += (size_t)snprintf(s + k, sizeof s - k, "%s%" PRId64, j ? ", " : "", t->stride[j]);
            return llc_fail(err, "%s: tensor %s is not contiguous (strides [%s]); llamac maps row-major tensors only", path, nm, s);
        }
        expect *= (uint64_t)t->shape[i];
    }
    if (t->offset < 0 || (uint64_t)t->offset > t->storage->numel || n > t->storage->numel - (uint64_t)t->offset)
        return llc_fail(err, "%s: tensor %s needs %" PRIu64 " elements from offset %" PRId64 " but its storage holds %" PRIu64, path,
                        nm, n, t->offset, t->storage->numel);
    o->type = t->storage->st->type;
    o->dtype = t->storage->st->name;
    o->elem_size = t->storage->st->elem_size;
    o->n_dims = t->n_dims;
    memcpy(o->shape, t->shape, sizeof o->shape);
    o->key = t->storage->key;
    o->key_len = t->storage->key_len;
    o->storage_numel = t->storage->numel;
    o->offset = (uint64_t)t->offset;
    o->n_elements = n;
    return true;
}

static void unpickler_free(unpickler *u) {
    for (block *b = u->blocks, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    free(u->stack);
    free(u->marks);
    free(u->memo);
}

bool llc_pickle_read_tensors(const uint8_t *data, size_t size, const char *path, llc_pickle_tensors *out, llamac_error *err) {
    memset(out, 0, sizeof *out);
    if (size > MAX_PICKLE_BYTES) return llc_fail(err, "%s: pickle of %zu bytes is too large", path, size);
    unpickler u = {.base = data, .p = data, .end = data + size, .path = path, .err = err};
    /* Every object costs at least one opcode byte and at most ~150 bytes (a tensor description). */
    u.arena_limit = size * 160 + (1u << 20);
    /* A stack from the start: opcodes that take "the objects since MARK" index it even when empty. */
    u.scap = 64;
    if (!(u.stack = malloc(u.scap * sizeof *u.stack))) return llc_fail(err, "%s: out of memory", path);
    pv *root = run(&u);
    bool ok = root != NULL;
    if (ok && root->kind != V_DICT)
        ok = llc_fail(err, "%s: pickle holds a %s, not a state dict of tensors", path, kind_name(root));
    size_t n = 0;
    for (uint32_t i = 0; ok && i + 1 < root->u.seq.n; i += 2)
        n += root->u.seq.items[i]->kind == V_STR && root->u.seq.items[i + 1]->kind == V_TENSOR;
    if (ok && n == 0) ok = llc_fail(err, "%s: the state dict holds no tensors", path);
    if (ok && !(out->v = calloc(n, sizeof *out->v))) ok = llc_fail(err, "%s: out of memory", path);
    char nb[80];
    for (uint32_t i = 0; ok && i + 1 < root->u.seq.n; i += 2) {
        const pv *k = root->u.seq.items[i], *v = root->u.seq.items[i + 1];
        if (k->kind != V_STR || v->kind != V_TENSOR) continue;
        llc_pickle_tensor *o = &out->v[out->n];
        o->name = k->u.s.p;
        o->name_len = k->u.s.n;
        ok = check_tensor(path, llc_clip(k->u.s.p, k->u.s.n, 60, nb, sizeof nb), v->u.tensor, o, err);
        out->n += ok;
    }
    if (ok) {
        qsort(out->v, out->n, sizeof *out->v, cmp_tensor);
        for (size_t i = 1; ok && i < out->n; i++)
            if (cmp_tensor(&out->v[i - 1], &out->v[i]) == 0)
                ok = llc_fail(err, "%s: the state dict has two tensors named %s", path,
                              llc_clip(out->v[i].name, out->v[i].name_len, 60, nb, sizeof nb));
    }
    unpickler_free(&u);
    if (!ok) llc_pickle_tensors_free(out);
    return ok;
}

void llc_pickle_tensors_free(llc_pickle_tensors *t) {
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* ---- the archive -------------------------------------------------------------------------------- */

bool llc_torch_open(llc_torch_file *f, const uint8_t *data, size_t size, const char *path, llamac_error *err) {
    memset(f, 0, sizeof *f);
    llc_zip z;
    if (!llc_zip_open(&z, data, size, path, err)) return false;
    /* torch.save names the top folder after the file (or "archive"): find the one holding data.pkl. */
    const llc_zip_entry *pkl = NULL;
    bool ok = true;
    for (size_t i = 0; ok && i < z.n_entries; i++) {
        const llc_zip_entry *e = &z.entries[i];
        const char *slash = memchr(e->name, '/', e->name_len);
        if (slash && (size_t)(e->name + e->name_len - slash) == 9 && !memcmp(slash, "/data.pkl", 9)) {
            if (pkl) ok = llc_fail(err, "%s: the archive holds several data.pkl", path);
            pkl = e;
        }
    }
    if (ok && !pkl) ok = llc_fail(err, "%s: not a PyTorch checkpoint (no data.pkl in the zip archive)", path);
    size_t top_len = ok ? (size_t)((const char *)memchr(pkl->name, '/', pkl->name_len) - pkl->name) : 0;
    char ename[512];
    if (ok && top_len > 256) ok = llc_fail(err, "%s: archive folder name is too long", path);
    if (ok) {
        /* torch >= 2.1 records the byte order; older files are little-endian. */
        snprintf(ename, sizeof ename, "%.*s/byteorder", (int)top_len, pkl->name);
        const llc_zip_entry *bo = llc_zip_find(&z, ename, strlen(ename));
        if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6)))
            ok = llc_fail(err, "%s: tensors are not stored little-endian", path);
    }
    /* The pickle is small and parsed in full: its checksum is cheap insurance against a damaged file
     * (the tensor bytes are not checked, which would mean reading the whole model at load). */
    if (ok && llc_crc32(0, pkl->data, (size_t)pkl->size) != pkl->crc32)
        ok = llc_fail(err, "%s: data.pkl fails its CRC-32 check (damaged file)", path);
    llc_pickle_tensors pt = {0};
    if (ok) ok = llc_pickle_read_tensors(pkl->data, (size_t)pkl->size, path, &pt, err);
    if (ok && !(f->tensors = calloc(pt.n, sizeof *f->tensors))) ok = llc_fail(err, "%s: out of memory", path);
    char nb[80];
    for (size_t i = 0; ok && i < pt.n; i++) {
        const llc_pickle_tensor *t = &pt.v[i];
        llc_clip(t->name, t->name_len, 60, nb, sizeof nb);
        snprintf(ename, sizeof ename, "%.*s/data/%.*s", (int)top_len, pkl->name, (int)t->key_len, t->key);
        const llc_zip_entry *e = llc_zip_find(&z, ename, strlen(ename));
        if (!e) {
            ok = llc_fail(err, "%s: tensor %s: its storage data/%.*s is not in the archive", path, nb, (int)(t->key_len > 64 ? 64 : t->key_len), t->key);
            break;
        }
        /* numel <= 2^60 (pickle.c), elem_size <= 8: no overflow */
        uint64_t need_bytes = t->storage_numel * t->elem_size;
        if (e->size < need_bytes) {
            ok = llc_fail(err, "%s: tensor %s: its storage needs %" PRIu64 " bytes but the archive entry holds %" PRIu64, path, nb,
                          need_bytes, e->size);
            break;
        }
        llc_torch_tensor *o = &f->tensors[i];
        o->name = t->name;
        o->name_len = t->name_len;
        o->type = t->type;
        o->dtype = t->dtype;
        o->n_dims = t->n_dims;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->n_elements = t->n_elements;
        o->storage = e->data;
        o->data = e->data + t->offset * t->elem_size;
        o->nbytes = t->n_elements * t->elem_size;
        f->n_tensors++;
    }
    llc_pickle_tensors_free(&pt);
    llc_zip_close(&z);
    if (!ok) llc_torch_close(f);
    return ok;
}

void llc_torch_close(llc_torch_file *f) {
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const llc_torch_tensor *llc_torch_find(const llc_torch_file *f, const char *name) {
    size_t len = strlen(name), lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const llc_torch_tensor *t = &f->tensors[mid];
        size_t n = t->name_len < len ? t->name_len : len;
        int c = memcmp(t->name, name, n);
        if (!c) c = t->name_len < len ? -1 : t->name_len > len;
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- writer ---------------------------------------------------------------------------------------- */

/* A growing byte buffer; oom remembers a failed allocation. */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void put32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

typedef struct pickler {
    buf b;
    uint32_t memo;                  /* next memo index */
    int64_t g_odict, g_rebuild, g_storage[3], s_storage, s_cpu; /* memo slots of repeated objects, -1: not yet */
} pickler;

static void pk_put(pickler *p) {
    if (p->memo < 256) {
        put8(&p->b, 'q');
        put8(&p->b, (uint8_t)p->memo);
    } else {
        put8(&p->b, 'r');
        put32(&p->b, p->memo);
    }
    p->memo++;
}

static void pk_get(pickler *p, int64_t slot) {
    if (slot < 256) {
        put8(&p->b, 'h');
        put8(&p->b, (uint8_t)slot);
    } else {
        put8(&p->b, 'j');
        put32(&p->b, (uint32_t)slot);
    }
}

static void pk_str(pickler *p, const char *s) {
    size_t n = strlen(s);
    put8(&p->b, 'X');
    put32(&p->b, (uint32_t)n);
    put(&p->b, s, n);
    pk_put(p);
}

/* A string or a global pickled once and fetched from the memo afterwards, as pickle does for the
 * same object met twice. */
static void pk_memo_str(pickler *p, int64_t *slot, const char *s) {
    if (*slot >= 0) {
        pk_get(p, *slot);
        return;
    }
    *slot = p->memo;
    pk_str(p, s);
}

static void pk_global(pickler *p, int64_t *slot, const char *module, const char *name) {
    if (*slot >= 0) {
        pk_get(p, *slot);
        return;
    }
    put8(&p->b, 'c');
    put(&p->b, module, strlen(module));
    put8(&p->b, '\n');
    put(&p->b, name, strlen(name));
    put8(&p->b, '\n');
    *slot = p->memo;
    pk_put(p);
}

static void pk_int(pickler *p, int64_t v) {
    if (v >= 0 && v < 256) {
        put8(&p->b, 'K');
        put8(&p->b, (uint8_t)v);
    } else if (v >= 0 && v < 65536) {
        put8(&p->b, 'M');
        put16(&p->b, (uint16_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put8(&p->b, 'J');
        put32(&p->b, (uint32_t)(int32_t)v);
    } else {
        /* LONG1: the shortest little-endian two's complement that holds v (positive here) */
        uint8_t bytes[9];
        int n = 0;
        uint64_t u = (uint64_t)v;
        while (n == 0 || u || (bytes[n - 1] & 0x80)) {
            bytes[n++] = (uint8_t)u;
            u >>= 8;
        }
        put8(&p->b, 0x8a);
        put8(&p->b, (uint8_t)n);
        put(&p->b, bytes, (size_t)n);
    }
}

static void pk_int_tuple(pickler *p, const int64_t *v, int n) {
    if (n > 3) put8(&p->b, '(');
    for (int i = 0; i < n; i++) pk_int(p, v[i]);
    put8(&p->b, n == 0 ? ')' : n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
    pk_put(p);
}

static const char *storage_class(uint32_t type) {
    return type == LLC_F32 ? "FloatStorage" : type == LLC_F16 ? "HalfStorage" : "BFloat16Storage";
}

/* The state dict as torch.save pickles it (protocol 2): an OrderedDict of
 * _rebuild_tensor_v2(persistent_load(('storage', torch.<Type>Storage, key, 'cpu', numel)), offset, shape,
 * stride, False, OrderedDict()), the repeated strings and globals fetched from the memo. */
static bool write_pickle(const llc_torch_out *t, int n, buf *out, llamac_error *err) {
    pickler p = {.g_odict = -1, .g_rebuild = -1, .g_storage = {-1, -1, -1}, .s_storage = -1, .s_cpu = -1};
    put8(&p.b, 0x80);
    put8(&p.b, 2);
    pk_global(&p, &p.g_odict, "collections", "OrderedDict");
    put8(&p.b, ')');
    put8(&p.b, 'R');
    pk_put(&p);
    int batch = 0;
    for (int i = 0; i < n; i++) {
        const llc_torch_out *o = &t[i];
        uint32_t type = o->type;
        const int64_t *shape = o->shape;
        int64_t stride[2];
        int nd = o->n_dims;
        stride[0] = nd == 2 ? shape[1] : 1;
        stride[1] = 1;
        if (batch == 0) put8(&p.b, '('); /* SETITEMS batches of 1000, as pickle writes them */
        pk_str(&p, o->name);
        pk_global(&p, &p.g_rebuild, "torch._utils", "_rebuild_tensor_v2");
        put8(&p.b, '(');
        put8(&p.b, '(');
        pk_memo_str(&p, &p.s_storage, "storage");
        int si = type == LLC_F32 ? 0 : type == LLC_F16 ? 1 : 2;
        pk_global(&p, &p.g_storage[si], "torch", storage_class(type));
        char ks[16];
        snprintf(ks, sizeof ks, "%d", o->storage);
        pk_str(&p, ks);
        pk_memo_str(&p, &p.s_cpu, "cpu");
        pk_int(&p, nd == 2 ? shape[0] * shape[1] : shape[0]);
        put8(&p.b, 't');
        pk_put(&p);
        put8(&p.b, 'Q');
        pk_int(&p, 0);
        pk_int_tuple(&p, shape, nd);
        pk_int_tuple(&p, stride, nd);
        put8(&p.b, 0x89);
        pk_get(&p, p.g_odict);
        put8(&p.b, ')');
        put8(&p.b, 'R');
        pk_put(&p);
        put8(&p.b, 't');
        pk_put(&p);
        put8(&p.b, 'R');
        pk_put(&p);
        if (++batch == 1000 || i == n - 1) {
            put8(&p.b, 'u');
            batch = 0;
        }
    }
    put8(&p.b, '.');
    if (p.b.oom) {
        free(p.b.p);
        return llc_fail(err, "out of memory");
    }
    *out = p.b;
    return true;
}

bool llc_torch_write(FILE *f, const char *path, const char *top, const llc_torch_out *t, int n, llc_torch_bytes_fn bytes,
                     void *ctx, llamac_error *err) {
    buf pkl = {0};
    if (!write_pickle(t, n, &pkl, err)) return false;
    llc_zip_writer z = {.f = f, .path = path};
    char name[128];
    snprintf(name, sizeof name, "%.60s/data.pkl", top);
    bool ok = llc_zip_add(&z, name, pkl.p, pkl.n, err);
    snprintf(name, sizeof name, "%.60s/byteorder", top);
    ok = ok && llc_zip_add(&z, name, "little", 6, err);
    for (int i = 0, next = 0; ok && i < n; i++) {
        if (t[i].storage != next) continue; /* a storage written already */
        next++;
        const void *data;
        uint64_t nb;
        snprintf(name, sizeof name, "%.60s/data/%d", top, t[i].storage);
        ok = bytes(ctx, i, &data, &nb, err) && llc_zip_add(&z, name, data, nb, err);
    }
    snprintf(name, sizeof name, "%.60s/version", top);
    ok = ok && llc_zip_add(&z, name, "3\n", 2, err) && llc_zip_finish(&z, err);
    llc_zip_writer_free(&z);
    free(pkl.p);
    return ok;
}
