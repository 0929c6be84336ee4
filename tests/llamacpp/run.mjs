#!/usr/bin/env node
// llama.cpp as a test and benchmark peer, through the prebuilt llama.cpp of the npm package node-llama-cpp.
// Every command prints one JSON object on stdout (batch: one per line); diagnostics go to stderr.
//
//   run.mjs info
//   run.mjs tokenize MODEL TEXT [--special] [--no-bos]         ids as llama_tokenize(add_special) gives them
//   run.mjs tokenize MODEL --texts FILE.json [...]             FILE.json: a JSON array of strings
//   run.mjs greedy   MODEL (--ids 1,2,3 | -p TEXT) -n N [--stop-eog]
//   run.mjs logits   MODEL (--ids 1,2,3 | -p TEXT) [--top K]
//   run.mjs bench    MODEL [-p 512] [-n 64] [-r 3] [--api internal|public]
//   run.mjs batch    FILE.jsonl|-                               one request per line (see README.md), the
//                                                               models loaded once: for tests
// common options: --threads N (bench: 2, others: 1), --ctx N, --kv f32|f16 (KV cache type: f32 for greedy and logits, as
// llamac's cache, f16 for bench, as llama-bench), --flash-attn (off), --verbose (llama.cpp's log on stderr).

// Never download or compile anything: the prebuilt binary of @node-llama-cpp/linux-x64, or an error.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
process.env.NODE_LLAMA_CPP_POSTINSTALL = "skip";
import { readFileSync } from "node:fs";
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");

class UsageError extends Error {}

const FLAGS = new Set(["special", "no-bos", "stop-eog", "flash-attn", "verbose"]);

function parseArgs(argv) {
    const req = {};
    const pos = [];
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a.startsWith("-") && a.length > 1 && isNaN(Number(a))) {
            const name = a.replace(/^-+/, "");
            if (FLAGS.has(name)) req[name] = true;
            else if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
            else req[name] = argv[++i];
        } else pos.push(a);
    }
    return { req, pos };
}

function intOf(req, name, def, min = 0) {
    const v = req[name];
    if (v === undefined || v === null) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} must be an integer >= ${min}`);
    return n;
}

function idsOf(v) {
    const ids = Array.isArray(v) ? v : String(v).split(",").filter((x) => x.trim() !== "").map(Number);
    if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new UsageError(`bad ids "${v}"`);
    return ids;
}

const KV_TYPES = { f32: "F32", f16: "F16" };

class Peer {
    constructor(verbose) {
        this.verbose = verbose;
        this.log = []; // llama.cpp's last messages, attached to errors (why a model did not load)
        this.models = new Map();
        this.contexts = new Map();
    }

    async llama() {
        if (!this._llama) {
            this._llama = await getLlama({
                gpu: false,
                build: "never",
                usePrebuiltBinaries: true,
                skipDownload: true,
                progressLogs: false,
                logLevel: this.verbose ? LlamaLogLevel.debug : LlamaLogLevel.warn,
                logger: (level, message) => {
                    const line = `[llama.cpp ${level}] ${String(message).trimEnd()}`;
                    this.log.push(line);
                    if (this.log.length > 20) this.log.shift();
                    // (node-llama-cpp's own memory simulation logs errors for vocabulary-only files: only
                    // shown with --verbose; a real load failure carries these lines in its error message)
                    if (this.verbose) process.stderr.write(line + "\n");
                },
            });
        }
        return this._llama;
    }

    // vocabOnly: a model already loaded whole serves too
    async model(path, vocabOnly = false) {
        const full = this.models.get(path + "\0full");
        if (full) return full;
        const key = path + (vocabOnly ? "\0vocab" : "\0full");
        if (!this.models.has(key)) {
            const llama = await this.llama();
            this.log.length = 0;
            const p = llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true, vocabOnly }).catch((e) => {
                const why = this.log.filter((l) => /error|fail|invalid|unknown|wrong|missing/i.test(l)).slice(-4).join(" | ");
                throw new Error(`llama.cpp could not load ${path}: ${e.message}${why ? ` (${why})` : ""}`);
            });
            this.models.set(key, p);
        }
        return this.models.get(key);
    }

    // A context of at least `need` positions for MODEL with these options, reused across requests
    // (its sequence is cleared before each use).
    async sequence(path, req, need) {
        const kv = req.kv ?? "f32";
        if (!(kv in KV_TYPES)) throw new UsageError("kv must be f32 or f16");
        // one thread unless asked: the answer does not depend on it, and ggml's spinning barriers make two
        // threads very slow on a loaded 2-core machine (stories260K greedy: 2 s with 1 thread, 30 s with 2)
        const threads = intOf(req, "threads", req.cmd === "bench" ? 2 : 1, 1);
        const fa = !!req["flash-attn"];
        const key = JSON.stringify([path, kv, threads, fa]);
        let c = this.contexts.get(key);
        const want = Math.max(intOf(req, "ctx", 0), need);
        if (!c || c.size < want) {
            if (c) await c.context.dispose();
            let size = 256;
            while (size < want) size *= 2;
            const model = await this.model(path);
            const context = await model.createContext({
                contextSize: size,
                batchSize: size,
                sequences: 1,
                threads,
                flashAttention: fa,
                experimentalKvCacheKeyType: KV_TYPES[kv],
                experimentalKvCacheValueType: KV_TYPES[kv],
                ignoreMemorySafetyChecks: true,
            });
            c = { context, seq: context.getSequence(), size, model };
            this.contexts.set(key, c);
        }
        await c.seq.clearHistory();
        return c;
    }
}

function vocabSize(model) {
    // GGUF metadata: the token list's length is the vocabulary size (null if node-llama-cpp did not keep it).
    const toks = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
    return Array.isArray(toks) ? toks.length : null;
}

function checkIds(model, ids) {
    const n = vocabSize(model);
    if (n != null) for (const id of ids) if (id >= n) throw new UsageError(`token id ${id} is outside the vocabulary (${n} tokens)`);
}

// Token ids as llama.cpp's llama_tokenize(add_special = true) gives them: BOS first if the vocabulary says
// so (tokenizer.ggml.add_bos_token), EOS last if it says so. node-llama-cpp's model.tokenize calls
// common_tokenize(vocab, text, add_special = false, parse_special), so the specials are added here.
function tokenizeLikeLlamaCpp(model, text, special, addSpecial) {
    const ids = Array.from(model.tokenize(text, special));
    if (!addSpecial) return ids;
    const out = [];
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) out.push(model.tokens.bos);
    out.push(...ids);
    if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) out.push(model.tokens.eos);
    return out;
}

function promptOf(model, req) {
    let ids;
    if (req.ids !== undefined) ids = idsOf(req.ids);
    else if (req.p !== undefined || req.prompt !== undefined) ids = tokenizeLikeLlamaCpp(model, req.p ?? req.prompt, !!req.special, !req["no-bos"]);
    else throw new UsageError("give ids or a prompt (-p TEXT)");
    if (ids.length === 0) throw new UsageError("the prompt has no tokens");
    checkIds(model, ids);
    return ids;
}

// One evaluation step through node-llama-cpp's public API: appends `ids` to the sequence and returns
// llama.cpp's greedy choice for the next token and, if asked, every logit of the last position. With
// temperature 0 node-llama-cpp's sampler chain is llama_sampler_init_greedy alone (no top-k, no
// penalties, no bias), so the candidate array it returns holds the raw logits of all n_vocab tokens.
async function step(seq, ids, wantLogits) {
    const input = ids.slice(0, -1);
    const generateNext = { token: true, options: { temperature: 0 } };
    if (wantLogits) generateNext.logits = true;
    input.push([ids[ids.length - 1], { generateNext }]);
    const res = await seq.controlledEvaluate(input);
    const last = res[res.length - 1];
    if (!last || !last.next || last.next.token == null) throw new Error("llama.cpp returned no output for the last position");
    return last.next;
}

function readJson(rel) {
    try {
        return JSON.parse(readFileSync(new URL(`./node_modules/${rel}`, import.meta.url), "utf8"));
    } catch {
        return null;
    }
}

async function cmdInfo(peer) {
    const llama = await peer.llama();
    return {
        node_llama_cpp: readJson("node-llama-cpp/package.json")?.version ?? null,
        prebuilt_package: readJson("@node-llama-cpp/linux-x64/package.json")?.version ?? null,
        llama_cpp_release: readJson("node-llama-cpp/llama/binariesGithubRelease.json")?.release ?? null,
        build_type: llama.buildType,
        gpu: llama.gpu,
        cpu_math_cores: llama.cpuMathCores,
        system_info: llama.systemInfo,
    };
}

async function cmdTokenize(peer, req) {
    const model = await peer.model(req.model, true);
    const special = !!req.special, addSpecial = !req["no-bos"];
    const out = { add_bos: model.tokens.shouldPrependBosToken, add_eos: model.tokens.shouldAppendEosToken, bos: model.tokens.bos };
    if (req.texts !== undefined) {
        const texts = typeof req.texts === "string" ? JSON.parse(readFileSync(req.texts, "utf8")) : req.texts;
        if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) throw new UsageError("texts must be a JSON array of strings");
        out.ids = texts.map((t) => tokenizeLikeLlamaCpp(model, t, special, addSpecial));
    } else if (typeof req.text === "string") {
        out.ids = tokenizeLikeLlamaCpp(model, req.text, special, addSpecial);
    } else throw new UsageError("tokenize needs TEXT or --texts FILE.json");
    return out;
}

async function cmdGreedy(peer, req) {
    const n = intOf(req, "n", 16);
    const model = await peer.model(req.model);
    const prompt = promptOf(model, req);
    const { seq } = await peer.sequence(req.model, req, prompt.length + n + 1);
    const ids = [];
    let pending = prompt;
    for (let i = 0; i < n; i++) {
        const next = await step(seq, pending, false);
        ids.push(next.token);
        if (req["stop-eog"] && model.isEogToken(next.token)) break;
        pending = [next.token];
    }
    // the continuation's text in the context of the prompt (a leading space of its first piece is kept)
    return { prompt_ids: prompt, ids, continuation: model.detokenize(ids, false, prompt) };
}

async function cmdLogits(peer, req) {
    const model = await peer.model(req.model);
    const prompt = promptOf(model, req);
    const { seq } = await peer.sequence(req.model, req, prompt.length + 1);
    const next = await step(seq, prompt, true);
    const out = { prompt_ids: prompt, argmax: next.token, n_vocab: vocabSize(model) ?? next.logits.size };
    const top = intOf(req, "top", 0);
    if (top > 0) {
        out.logits = Array.from(next.logits.entries()).slice(0, top);
    } else {
        if (next.logits.size !== out.n_vocab) throw new Error(`llama.cpp returned ${next.logits.size} logits for ${out.n_vocab} tokens`);
        const logits = new Array(out.n_vocab).fill(null);
        for (const [id, v] of next.logits) logits[id] = v;
        out.logits = logits;
    }
    return out;
}

// llama-bench's method: a prompt of p random tokens (BOS first if the vocabulary adds one) decoded as one
// batch with logits for its last position only; and, separately and from an empty cache, n single-token
// decodes each producing logits (no sampling). A warm-up run of each first, then r timed repetitions, the
// KV cache cleared before each. Reported: mean and standard deviation of tok/s over the repetitions.
// --api internal (default) drives llama_decode through LlamaContext's native handle (`_ctx`: initBatch,
// addToBatch, decodeBatch — what node-llama-cpp itself does), so no sampler runs; --api public goes
// through controlledEvaluate and samples greedily after each token (a little slower).
async function cmdBench(peer, req) {
    const nPrompt = intOf(req, "p", 512), nGen = intOf(req, "n", 64), reps = intOf(req, "r", 3, 1);
    const api = req.api ?? "internal";
    if (api !== "internal" && api !== "public") throw new UsageError("api must be internal or public");
    const t0 = performance.now();
    const model = await peer.model(req.model);
    const loadMs = performance.now() - t0;
    const { context, seq } = await peer.sequence(req.model, { ...req, kv: req.kv ?? "f16" }, Math.max(nPrompt, nGen + 1));
    const nVocab = vocabSize(model) ?? (await step(seq, [0], true)).logits.size;
    let rng = 0x12345678;
    const randTok = () => {
        rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0;
        return rng % nVocab;
    };
    const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
    const ctx = context._ctx;
    const internal = api === "internal" && ctx && typeof ctx.decodeBatch === "function";
    const seqId = seq.sequenceId ?? 0;
    const clear = async () => (internal ? ctx.removeTokenCellsFromSequence(seqId, 0, -1) : seq.clearHistory());
    const decode = async (tokens, pos) => {
        if (!internal) return step(seq, tokens, false);
        ctx.initBatch(tokens.length);
        ctx.addToBatch(seqId, pos, Uint32Array.from(tokens), Uint32Array.from([tokens.length - 1]));
        await ctx.decodeBatch();
    };
    const runPrompt = async (n) => {
        const toks = [];
        for (let i = 0; i < n; i++) toks.push(i === 0 && bos != null ? bos : randTok());
        await decode(toks, 0);
    };
    const runGen = async (n) => {
        let tok = bos != null ? bos : randTok();
        for (let i = 0; i < n; i++) {
            await decode([tok], i);
            tok = randTok();
        }
    };
    const timed = async (n, run) => {
        const tps = [];
        for (let r = 0; r < reps; r++) {
            await clear();
            const s = process.hrtime.bigint();
            await run(n);
            tps.push(n / (Number(process.hrtime.bigint() - s) / 1e9));
        }
        const m = tps.reduce((a, b) => a + b, 0) / tps.length;
        const sd = tps.length > 1 ? Math.sqrt(tps.reduce((a, b) => a + (b - m) ** 2, 0) / (tps.length - 1)) : 0;
        return { mean: +m.toFixed(2), stddev: +sd.toFixed(2), samples: tps.map((x) => +x.toFixed(2)) };
    };
    const out = {
        model: req.model,
        model_bytes: model.size,
        threads: intOf(req, "threads", 2, 1),  // as sequence() resolved it for bench
        kv: req.kv ?? "f16",
        flash_attn: !!req["flash-attn"],
        api: internal ? "internal" : "public",
        reps,
        load_ms: +loadMs.toFixed(1),
    };
    if (nPrompt > 0) {
        await clear();
        await runPrompt(nPrompt); // warm-up
        out[`pp${nPrompt}`] = await timed(nPrompt, runPrompt);
        out.prefill_tok_s = out[`pp${nPrompt}`].mean;
    }
    if (nGen > 0) {
        await clear();
        await runGen(1); // warm-up, as llama-bench
        out[`tg${nGen}`] = await timed(nGen, runGen);
        out.decode_tok_s = out[`tg${nGen}`].mean;
    }
    await clear();
    return out;
}

async function dispatch(peer, req) {
    if (req.cmd !== "info" && typeof req.model !== "string") throw new UsageError(`${req.cmd} needs MODEL`);
    switch (req.cmd) {
    case "info": return cmdInfo(peer);
    case "tokenize": return cmdTokenize(peer, req);
    case "greedy": return cmdGreedy(peer, req);
    case "logits": return cmdLogits(peer, req);
    case "bench": return cmdBench(peer, req);
    default: throw new UsageError(`unknown command "${req.cmd}"`);
    }
}

// batch: one JSON request per line, e.g. {"cmd": "logits", "model": "m.gguf", "ids": [1, 2]}, option
// names as on the command line ("no-bos": true, "n": 16, "kv": "f32", ...). One JSON answer per line, in
// order: the command's object, or {"error": "..."} (a model that does not load fails only its requests).
async function runBatch(peer, file) {
    const text = readFileSync(file === "-" ? 0 : file, "utf8");
    const lines = [];
    for (const line of text.split("\n")) {
        if (line.trim() === "") continue;
        let res;
        try {
            const req = JSON.parse(line);
            res = await dispatch(peer, req);
        } catch (e) {
            res = { error: e && e.message ? e.message : String(e) };
        }
        lines.push(JSON.stringify(res));
    }
    return lines.join("\n");
}

function usage(msg) {
    process.stderr.write(`run.mjs: error: ${msg}\n` +
        "usage: run.mjs info | tokenize MODEL (TEXT | --texts FILE.json) [--special] [--no-bos] |\n" +
        "       greedy MODEL (--ids I,J | -p TEXT) -n N [--stop-eog] | logits MODEL (--ids I,J | -p TEXT) [--top K] |\n" +
        "       bench MODEL [-p 512] [-n 64] [-r 3] [--api internal|public] | batch FILE.jsonl|-\n" +
        "       common: --threads N --ctx N --kv f32|f16 --flash-attn --verbose\n");
    process.exit(2);
}

let output;
try {
    const [cmd, ...rest] = process.argv.slice(2);
    if (!cmd) throw new UsageError("no command");
    const { req, pos } = parseArgs(rest);
    const peer = new Peer(!!req.verbose);
    if (cmd === "batch") {
        if (pos.length !== 1) throw new UsageError("batch needs FILE.jsonl or -");
        output = await runBatch(peer, pos[0]);
    } else {
        req.cmd = cmd;
        if (cmd !== "info") {
            if (pos.length < 1) throw new UsageError(`${cmd} needs MODEL`);
            req.model = pos[0];
            if (cmd === "tokenize" && pos.length > 1) req.text = pos[1];
        }
        output = JSON.stringify(await dispatch(peer, req));
    }
} catch (e) {
    if (e instanceof UsageError) usage(e.message);
    process.stderr.write(`run.mjs: error: ${e && e.message ? e.message : e}\n`);
    process.exit(1);
}
// node-llama-cpp keeps native handles open: exit explicitly once the answer is flushed (a large answer goes
// to a pipe in several writes).
process.stdout.write(output + "\n", () => process.exit(0));
