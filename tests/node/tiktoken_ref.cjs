#!/usr/bin/env node
// tiktoken (npm, the WASM build of OpenAI's Rust core) as an independent reference for llamac's Llama 3
// tokenizer. Offline: the ranks come from Meta's tokenizer.model given on the command line.
//
//   node tiktoken_ref.cjs classes
//       prints 0x110000 characters, one per code point: 1 \p{L}, 2 \p{N}, 3 \s, 0 other, as tiktoken's
//       regex engine classifies them (surrogates: 0)
//   node tiktoken_ref.cjs encode RANKS IN OUT [--special]
//       IN: records (u32 little-endian length, UTF-8 bytes); OUT: per record u32 count, then the ids.
//       --special: special-token text becomes the special token (encode(text, "all")); otherwise
//       encode_ordinary. A record that is not valid UTF-8 gets count 0xFFFFFFFF (tiktoken takes strings).
//   node tiktoken_ref.cjs bench RANKS ROUNDS TEXT OUT [TEXT OUT ...]
//       encodes each whole file (UTF-8) ROUNDS times on one thread (encode_ordinary), writes its ids
//       (u32 LE) to OUT and prints one JSON line per file:
//       {"file":…, "bytes":…, "tokens":…, "best_s":…, "best_cpu_s":…, "mb_s":…, "init_s":…}
//       (best_s: the fastest round by the clock; best_cpu_s: by the process's CPU time)
"use strict";
const fs = require("fs");
const path = require("path");
const { Tiktoken } = require(path.join(__dirname, "node_modules", "tiktoken"));

// Meta's llama/tokenizer.py (Llama 3.1 and later): the pattern and the special tokens after the ranks.
const PAT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" +
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const NAMED = [
  "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
  "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
  "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
];

function llama3(ranksPath) {
  const bfe = fs.readFileSync(ranksPath, "utf8");
  let n = 0;
  for (const line of bfe.split("\n")) if (line.trim()) n++;
  const specials = {};
  for (let i = 0; i < 256; i++)
    specials[i < NAMED.length ? NAMED[i] : `<|reserved_special_token_${i - NAMED.length + 3}|>`] = n + i;
  return new Tiktoken(bfe, specials, PAT);
}

function classes() {
  let bfe = "";
  for (let b = 0; b < 256; b++) bfe += Buffer.from([b]).toString("base64") + " " + b + "\n";
  let all = "";
  for (let cp = 0; cp < 0x110000; cp++) if (cp < 0xd800 || cp > 0xdfff) all += String.fromCodePoint(cp);
  const out = Buffer.alloc(0x110000, "0");
  // A pattern that matches one class only: tiktoken drops the text between matches, so the bytes of
  // the matches are exactly the code points of that class.
  for (const [cls, pat] of [["1", "\\p{L}"], ["2", "\\p{N}"], ["3", "\\s"]]) {
    const enc = new Tiktoken(bfe, {}, pat);
    const text = Buffer.from(enc.decode(enc.encode_ordinary(all))).toString("utf8");
    for (const ch of text) out[ch.codePointAt(0)] = cls.charCodeAt(0);
    enc.free();
  }
  process.stdout.write(out);
}

function readRecords(file) {
  const buf = fs.readFileSync(file);
  const recs = [];
  for (let p = 0; p + 4 <= buf.length; ) {
    const n = buf.readUInt32LE(p);
    recs.push(buf.subarray(p + 4, p + 4 + n));
    p += 4 + n;
  }
  return recs;
}

function encode(ranks, inFile, outFile, special) {
  const enc = llama3(ranks);
  const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF
  const parts = [];
  for (const rec of readRecords(inFile)) {
    let text;
    try {
      text = dec.decode(rec);
    } catch (e) {
      const h = Buffer.alloc(4);
      h.writeUInt32LE(0xffffffff);
      parts.push(h);
      continue;
    }
    const ids = special ? enc.encode(text, "all") : enc.encode_ordinary(text);
    const b = Buffer.alloc(4 + 4 * ids.length);
    b.writeUInt32LE(ids.length, 0);
    for (let i = 0; i < ids.length; i++) b.writeUInt32LE(ids[i], 4 + 4 * i);
    parts.push(b);
  }
  fs.writeFileSync(outFile, Buffer.concat(parts));
  enc.free();
}

function bench(ranks, rounds, pairs) {
  const t0 = process.hrtime.bigint();
  const enc = llama3(ranks);
  const initS = Number(process.hrtime.bigint() - t0) / 1e9;
  for (let k = 0; k + 1 < pairs.length; k += 2) {
    const bytes = fs.readFileSync(pairs[k]);
    const text = bytes.toString("utf8");
    let best = Infinity, bestCpu = Infinity, ids = null;
    for (let r = 0; r < rounds; r++) {
      const a = process.hrtime.bigint(), c = process.cpuUsage();
      ids = enc.encode_ordinary(text);
      const s = Number(process.hrtime.bigint() - a) / 1e9, u = process.cpuUsage(c);
      if (s < best) best = s;
      if ((u.user + u.system) / 1e6 < bestCpu) bestCpu = (u.user + u.system) / 1e6;
    }
    fs.writeFileSync(pairs[k + 1], Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength));
    console.log(JSON.stringify({ file: pairs[k], bytes: bytes.length, tokens: ids.length, best_s: best,
                                 best_cpu_s: bestCpu, mb_s: bytes.length / 1e6 / best, init_s: initS }));
  }
  enc.free();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "classes") classes();
else if (mode === "encode" && args.length >= 3) encode(args[0], args[1], args[2], args[3] === "--special");
else if (mode === "bench" && args.length >= 4 && args.length % 2 === 0) bench(args[0], parseInt(args[1], 10), args.slice(2));
else {
  console.error("usage: tiktoken_ref.cjs classes | encode RANKS IN OUT [--special] | bench RANKS ROUNDS TEXT OUT [TEXT OUT ...]");
  process.exit(2);
}
