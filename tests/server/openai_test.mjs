// The official openai client (npm "openai" v6) against a running `llamac serve` (started by
// tests/test_serve_openai.py, which passes the address, key and references in the environment).
import OpenAI from "openai";

const url = process.env.LLAMAC_URL;
const key = process.env.LLAMAC_KEY;
const model = process.env.LLAMAC_MODEL;
const ref = JSON.parse(process.env.LLAMAC_REF); // {prompt, text, n_ids, chat_text, chat_n_ids, messages}
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, maxRetries: 0, timeout: 120000 });
let failures = 0;

function check(cond, msg) {
  console.log((cond ? "ok   " : "FAIL ") + msg);
  if (!cond) failures++;
}

async function metrics() {
  const r = await fetch(url + "/metrics");
  const out = {};
  for (const line of (await r.text()).split("\n")) {
    const m = line.match(/^([^{ #]+)(\{[^}]*\})? (\S+)$/);
    if (m) out[m[1] + (m[2] || "").replace(/model_name="[^"]*",?/, "").replace("{}", "")] = Number(m[3]);
  }
  return out;
}

async function expectError(what, cls, status, fn) {
  try {
    await fn();
    check(false, what + ": no error");
  } catch (e) {
    check(e instanceof cls && e.status === status, `${what}: ${cls.name} ${status} (got ${e.constructor.name} ${e.status}: ${e.message})`);
  }
}

async function main() {
  // completions, greedy: the text llamac generate gives
  const c = await client.completions.create({ model, prompt: ref.prompt, max_tokens: 30, temperature: 0 });
  check(c.choices[0].text === ref.text && c.usage.completion_tokens === ref.n_ids && c.choices[0].finish_reason === "length",
        "completions.create equals llamac generate");
  check(c.object === "text_completion" && typeof c.system_fingerprint === "string" && c.usage.total_tokens === c.usage.prompt_tokens + 30,
        "completion object, system_fingerprint, usage");
  // chat, greedy
  const ch = await client.chat.completions.create({ model, messages: ref.messages, max_completion_tokens: 20, temperature: 0 });
  check(ch.choices[0].message.content === ref.chat_text && ch.choices[0].message.role === "assistant" &&
        ch.usage.completion_tokens === ref.chat_n_ids, "chat.completions.create equals llamac generate --chat");
  // streaming chat with usage
  const stream = await client.chat.completions.create({ model, messages: ref.messages, max_tokens: 20, temperature: 0, stream: true,
                                                        stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    for (const choice of chunk.choices) {
      text += choice.delta.content || "";
      finish = choice.finish_reason || finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === ref.chat_text && finish === "length" && usage && usage.completion_tokens === ref.chat_n_ids && chunks > 2,
        "streamed chat equals the answer, with usage in the last chunk");
  // streaming completions
  const cs = await client.completions.create({ model, prompt: ref.prompt, max_tokens: 30, temperature: 0, stream: true });
  let ctext = "";
  for await (const chunk of cs) ctext += chunk.choices.map((x) => x.text).join("");
  check(ctext === ref.text, "streamed completion equals llamac generate");
  // n > 1 and seed reproducibility
  const a = await client.chat.completions.create({ model, messages: ref.messages, max_tokens: 20, temperature: 1, seed: 42, n: 3 });
  const b = await client.chat.completions.create({ model, messages: ref.messages, max_tokens: 20, temperature: 1, seed: 42, n: 3 });
  check(a.choices.length === 3 && a.choices.map((x) => x.index).join() === "0,1,2", "n=3: three choices");
  check(JSON.stringify(a.choices.map((x) => x.message.content)) === JSON.stringify(b.choices.map((x) => x.message.content)),
        "the same seed: the same choices");
  check(a.usage.prompt_tokens === ch.usage.prompt_tokens && a.usage.prompt_tokens_details.cached_tokens > 0,
        "n=3: the prompt counted once, served from the prefix cache");
  // logprobs
  const lp = await client.chat.completions.create({ model, messages: ref.messages, max_tokens: 10, temperature: 0, logprobs: true,
                                                    top_logprobs: 3 });
  const content = lp.choices[0].logprobs.content;
  check(content.length === 10 && content.map((t) => t.token).join("") === lp.choices[0].message.content &&
        content.every((t) => t.top_logprobs.length === 3 && t.top_logprobs[0].logprob === t.logprob && t.logprob <= 0),
        "chat logprobs: one entry per token, the greedy token the most likely");
  const clp = await client.completions.create({ model, prompt: ref.prompt, max_tokens: 5, temperature: 0, logprobs: 2 });
  check(clp.choices[0].logprobs.tokens.join("") === clp.choices[0].text && clp.choices[0].logprobs.token_logprobs.length === 5,
        "completions logprobs: tokens and token_logprobs");
  // stop
  const stopAt = ref.text.slice(10, 15);
  const st = await client.completions.create({ model, prompt: ref.prompt, max_tokens: 30, temperature: 0, stop: [stopAt] });
  check(st.choices[0].text === ref.text.slice(0, ref.text.indexOf(stopAt)) && st.choices[0].finish_reason === "stop",
        "stop: the text ends before the stop string");
  // models
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === model, "models.list");
  const m = await client.models.retrieve(model);
  check(m.id === model, "models.retrieve");
  // abort mid-stream: the request is cancelled, its KV freed
  const before = await metrics();
  const ac = new AbortController();
  const long = await client.completions.create({ model, prompt: ref.prompt, max_tokens: 2000, temperature: 0, stream: true,
                                                 ignore_eos: true }, { signal: ac.signal });
  let got = 0, aborted = false;
  try {
    for await (const chunk of long) {
      got++;
      if (got === 3) ac.abort();
    }
  } catch (e) {
    aborted = e instanceof OpenAI.APIUserAbortError || e.name === "AbortError";
  }
  check(aborted || got >= 3, "abort mid-stream ends the iteration");
  let mt = null;
  for (let i = 0; i < 2400; i++) {
    mt = await metrics();
    if (mt["vllm:num_requests_running"] === 0 && mt["llamac:kv_cache_blocks_used"] === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // (on a very fast machine the 2000 tokens may be done before the abort arrives: then it counts as length)
  check(mt["vllm:request_success_total{finished_reason=\"abort\"}"] === 1 || mt["vllm:request_success_total{finished_reason=\"length\"}"] ===
        before["vllm:request_success_total{finished_reason=\"length\"}"] + 1,
        "the aborted request is counted as abort");
  check(mt["vllm:num_requests_running"] === 0 && mt["vllm:num_requests_waiting"] === 0 && mt["vllm:kv_cache_usage_perc"] === 0 &&
        mt["llamac:kv_cache_blocks_used"] === 0, "after the abort: nothing running, no KV in use");
  // errors as typed exceptions
  await expectError("max_tokens 0", OpenAI.BadRequestError, 400, () =>
    client.completions.create({ model, prompt: "x", max_tokens: 0 }));
  await expectError("an unknown parameter", OpenAI.BadRequestError, 400, () =>
    client.completions.create({ model, prompt: "x", frobnicate: 1 }));
  await expectError("an unknown role", OpenAI.BadRequestError, 400, () =>
    client.chat.completions.create({ model, messages: [{ role: "wizard", content: "x" }] }));
  await expectError("a prompt longer than the context", OpenAI.BadRequestError, 400, () =>
    client.completions.create({ model, prompt: "x", max_tokens: 1000000 }));
  await expectError("an unknown model", OpenAI.NotFoundError, 404, () =>
    client.completions.create({ model: "nope", prompt: "x" }));
  const bad = new OpenAI({ baseURL: url + "/v1", apiKey: "wrong", maxRetries: 0 });
  await expectError("a wrong key", OpenAI.AuthenticationError, 401, () =>
    bad.completions.create({ model, prompt: "x", max_tokens: 2 }));
  try {
    await client.completions.create({ model, prompt: "x", max_tokens: 0 });
  } catch (e) {
    check(e.error && typeof e.error.message === "string" && e.type === "invalid_request_error" && e.param === "max_tokens",
          "the error body reaches the client (message, type, param)");
  }
  console.log(`${failures} failed`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log("FAIL unexpected: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
