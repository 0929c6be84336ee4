#!/usr/bin/python3
"""`llamac serve` driven by the official openai client (npm "openai" v6, pinned in
tests/server/package-lock.json, installed by scripts/install-deps.sh): chat, completions, streaming,
n > 1, logprobs, usage, stop, seed reproducibility, an abort mid-stream (then /metrics shows nothing
running and no KV in use), errors as the client's typed exceptions. The answers are compared with
`llamac generate`'s (greedy)."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import HANG, LLAMAC, SHARED, Server  # noqa: E402

STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
CLIENT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server")


def generate(args):
    p = subprocess.run([LLAMAC, "generate", "-m", STORIES, "--json", "--threads", "2", "--temp", "0"] + args,
                       capture_output=True, timeout=HANG)
    if p.returncode != 0:
        sys.exit("generate: " + p.stderr.decode()[-300:])
    return json.loads(p.stdout)


def main():
    if not shutil.which("node") or not os.path.isdir(os.path.join(CLIENT_DIR, "node_modules", "openai")):
        sys.exit("the openai client is missing: run scripts/install-deps.sh (node, then npm ci in tests/server)")
    g = generate(["-p", "Once upon a time", "-n", "30"])
    chat = generate(["-p", "Tell me a story", "-n", "20", "--chat", "--system", "You are kind."])
    ref = {"prompt": "Once upon a time", "text": g["text"], "n_ids": len(g["ids"]), "chat_text": chat["text"],
           "chat_n_ids": len(chat["ids"]),
           "messages": [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Tell me a story"}]}
    with Server(STORIES, "--api-key", "sk-llamac-test", "--model-name", "stories") as srv:
        env = dict(os.environ, LLAMAC_URL="http://127.0.0.1:%d" % srv.port, LLAMAC_KEY="sk-llamac-test", LLAMAC_MODEL="stories",
                   LLAMAC_REF=json.dumps(ref))
        p = subprocess.run(["node", os.path.join(CLIENT_DIR, "openai_test.mjs")], env=env, timeout=HANG * 3)
        rc = srv.stop()
    print(("ok   " if rc == 0 else "FAIL ") + "the server exits 0 on SIGTERM (got %r)" % rc)
    sys.exit(1 if p.returncode or rc != 0 else 0)


if __name__ == "__main__":
    main()
