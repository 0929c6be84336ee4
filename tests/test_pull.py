#!/usr/bin/python3
"""`llamac pull` and `-m ORG/NAME[:QUANT]` against a fake Hugging Face hub on the loopback.

The real hub is unreachable here, so two http.server instances play it: the hub (model API, resolve
URLs answering HEAD and GET as huggingface.co does: X-Repo-Commit, X-Linked-Etag, X-Linked-Size,
ETag, a 302 for LFS files) and a "CDN" on another host name and port (Range requests, 206). The
expectations are the hub protocol and huggingface_hub 0.2x's cache layout, written out here
independently of llamac:
  * the cache llamac writes: blobs named by the etag (the sha256 for LFS files, the git blob sha1
    otherwise) holding exactly the served bytes, snapshots/COMMIT/PATH as relative links
    ../../blobs/ETAG (one ../ more per folder), refs/main holding the commit, no *.incomplete left;
  * a cache built by hand the way huggingface_hub writes it is found by `-m ORG/NAME` and the model
    served that way (stories260K) generates llama2.c's golden text;
  * a second pull fetches no file (requests counted), HF_HUB_OFFLINE=1 works from the cache alone and
    says clearly when the model is absent;
  * :QUANT choice (case-insensitive, split parts together, Q4_K_M by default, the choices listed when
    ambiguous), --include/--exclude globs, the default file set of a non-GGUF repository;
  * the Bearer token reaches the hub and never the CDN; 401/403/404 give one clear line;
  * 429 with Retry-After, 500, a connection cut mid-file (resumed with Range), a partial file left by a
    killed pull (resumed), a corrupted body (sha256 mismatch: deleted, exit 1), a huge X-Linked-Size
    (refused against the free disk space), unsafe file names in the listing (refused);
  * two pulls of the same repository at once both succeed with one correct blob, fetched once.
No timing assertions: retries sleep a second or two, bounded by generous timeouts.
"""

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.path.join(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test"), "pull")
GGUF = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
GOLDEN = os.path.join(SHARED, "testdata", "golden", "stories260K-greedy.jsonl")
TOKEN = "hf_testsecret123"

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def git_sha1(b):
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


def commit_of(name):
    return hashlib.sha1(name.encode()).hexdigest()


def is_lfs(path):
    return path.endswith((".gguf", ".safetensors", ".pth", ".bin"))


class Repo:
    def __init__(self, files, commit=None, gated=None, listing=None):
        self.files = files            # path -> bytes
        self.commit = commit
        self.gated = gated            # None, 401 or 403
        self.listing = listing        # a raw listing to send instead (hostile names)
        self.faults = {}              # (kind, path) -> list of actions, consumed one per request

    def etag(self, path):
        b = self.files[path]
        return sha256(b) if is_lfs(path) else git_sha1(b)


class Hub:
    """The fake hub and CDN; every request is logged as (server, method, path, Authorization, Range)."""

    def __init__(self):
        self.repos = {}
        self.renamed = {}
        self.log = []
        self.lock = threading.Lock()
        self.cdn_delay = 0.0
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.handle_any(False)

            def do_GET(self):
                self.handle_any(True)

            def send(self, status, headers, body=b"", with_body=True):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body and body:
                    self.wfile.write(body)

            def handle_any(self, get):
                server = self.server.name
                with hub.lock:
                    hub.log.append((server, self.command, self.path, self.headers.get("Authorization"),
                                    self.headers.get("Range")))
                try:
                    if server == "cdn":
                        hub.serve_cdn(self, get)
                    else:
                        hub.serve_hub(self, get)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.hub.name = "hub"
        self.cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.cdn.name = "cdn"
        self.hub.daemon_threads = self.cdn.daemon_threads = True
        self.endpoint = "http://127.0.0.1:%d" % self.hub.server_address[1]
        # another host name and port: the token must not travel there
        self.cdn_base = "http://localhost:%d" % self.cdn.server_address[1]
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.hub, self.cdn)]
        for t in self.threads:
            t.start()

    def close(self):
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    def add(self, repo_id, files, **kw):
        r = Repo(files, commit=commit_of(repo_id), **kw)
        self.repos[repo_id] = r
        return r

    def fault(self, repo, kind, path):
        acts = repo.faults.get((kind, path))
        return acts.pop(0) if acts else None

    def clear_log(self):
        with self.lock:
            self.log.clear()

    def requests(self, server=None, method=None, contains=""):
        with self.lock:
            return [e for e in self.log if (server is None or e[0] == server)
                    and (method is None or e[1] == method) and contains in e[2]]

    def error(self, h, status, code, msg, get):
        h.send(status, {"X-Error-Code": code, "X-Error-Message": msg, "Content-Type": "application/json"},
               json.dumps({"error": msg}).encode(), get)

    def serve_hub(self, h, get):
        path = urllib.parse.urlsplit(h.path).path
        for old, new in self.renamed.items():
            # a renamed repository: the hub answers with a relative redirect to the new name
            for pre in ("/api/models/", "/"):
                if path.startswith(pre + old + "/"):
                    return h.send(307, {"Location": pre + new + path[len(pre + old):]}, b"", get)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
        if m and get:
            repo = self.repos.get(m.group(1))
            rev = urllib.parse.unquote(m.group(2))
            if repo is None:
                return self.error(h, 401, "RepoNotFound", "Repository not found", get)
            act = self.fault(repo, "api", "")
            if act:
                return h.send(act[0], act[1], b"busy", get)
            if repo.gated:
                return self.error(h, repo.gated, "GatedRepo", "Access to model %s is restricted" % m.group(1), get)
            if rev not in ("main", repo.commit):
                return self.error(h, 404, "RevisionNotFound", "Invalid rev id: " + rev, get)
            body = repo.listing if repo.listing is not None else json.dumps(
                {"id": m.group(1), "sha": repo.commit, "siblings": [{"rfilename": f} for f in repo.files]})
            return h.send(200, {"Content-Type": "application/json"}, body.encode(), get)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not m:
            return h.send(404, {}, b"no route", get)
        repo = self.repos.get(m.group(1))
        fname = urllib.parse.unquote(m.group(3))
        if repo is None:
            return self.error(h, 401, "RepoNotFound", "Repository not found", get)
        if repo.gated:
            return self.error(h, repo.gated, "GatedRepo", "Access restricted", get)
        if m.group(2) not in ("main", repo.commit):
            return self.error(h, 404, "RevisionNotFound", "Invalid rev id", get)
        if fname not in repo.files:
            return self.error(h, 404, "EntryNotFound", "Entry not found", get)
        act = self.fault(repo, "head" if not get else "get", fname)
        if act:
            return h.send(act[0], act[1], b"slow down", get)
        b = repo.files[fname]
        common = {"X-Repo-Commit": repo.commit}
        if is_lfs(fname):
            size = repo.faults.get(("size", fname), len(b))
            hdr = dict(common)
            hdr.update({"X-Linked-Etag": '"%s"' % repo.etag(fname), "X-Linked-Size": str(size),
                        "ETag": '"%s"' % git_sha1(b"pointer" + b),
                        "Location": "%s/repos/%s/%s?token=signed" % (self.cdn_base, m.group(1), repo.etag(fname))})
            return h.send(302, hdr, b"", get)
        hdr = dict(common)
        # the hub sends weak etags for some files: the W/ prefix and the quotes are not part of the name
        hdr["ETag"] = ('W/"%s"' if fname.endswith(".md") else '"%s"') % repo.etag(fname)
        hdr["Content-Length"] = str(len(b))
        return h.send(200, hdr, b, get)

    def serve_cdn(self, h, get):
        path = urllib.parse.urlsplit(h.path).path
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/([0-9a-f]{64})", path)
        repo = self.repos.get(m.group(1)) if m else None
        files = [f for f in (repo.files if repo else {}) if repo.etag(f) == m.group(2)] if repo else []
        if not files:
            return h.send(404, {}, b"no such blob", get)
        fname = files[0]
        body = repo.files[fname]
        served = repo.faults.get(("corrupt", fname), body)
        start = 0
        rng = h.headers.get("Range")
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
        act = self.fault(repo, "cdn", fname)
        if act == "cut":
            # the whole length announced, half of it sent, then the connection dropped
            h.send_response(200 if not rng else 206)
            h.send_header("Content-Length", str(len(served) - start))
            if rng:
                h.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(served) - 1, len(served)))
            h.end_headers()
            h.wfile.write(served[start:start + (len(served) - start) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if act:
            return h.send(act[0], act[1], b"busy", get)
        part = served[start:]
        hdr = {"Content-Length": str(len(part)), "Content-Type": "application/octet-stream"}
        if rng:
            hdr["Content-Range"] = "bytes %d-%d/%d" % (start, len(served) - 1, len(served))
        h.send_response(206 if rng else 200)
        for k, v in hdr.items():
            h.send_header(k, v)
        h.end_headers()
        if get:
            step = 65536
            for i in range(0, len(part), step):
                h.wfile.write(part[i:i + step])
                if self.cdn_delay:
                    time.sleep(self.cdn_delay)


def run(args, env, timeout=600):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    e.update(env)
    p = subprocess.run([LLAMAC] + args, capture_output=True, timeout=timeout, env=e)
    err = p.stderr.decode(errors="replace")
    if "Sanitizer" in err or "runtime error:" in err:
        fail("%s: a sanitizer report: %s" % (" ".join(args), err[-1500:]))
    return p.returncode, p.stdout.decode(errors="replace"), err


def one_line_error(rc, err, want_rc=1):
    lines = [l for l in err.splitlines() if l.startswith("llamac: error:")]
    return rc == want_rc and len(lines) == 1


def expected_layout(cache, repo_id, repo, paths, ref="main"):
    """The files huggingface_hub 0.2x leaves for `paths` of repo: {relative path: ('link', target) or
    ('file', bytes)}."""
    org, name = repo_id.split("/")
    base = "models--%s--%s" % (org, name)
    want = {}
    for p in paths:
        et = repo.etag(p)
        want["%s/blobs/%s" % (base, et)] = ("file", repo.files[p])
        want["%s/snapshots/%s/%s" % (base, repo.commit, p)] = ("link", "../" * (2 + p.count("/")) + "blobs/" + et)
    want["%s/refs/%s" % (base, ref)] = ("file", repo.commit.encode())
    return want


def actual_layout(cache, repo_id):
    org, name = repo_id.split("/")
    base = "models--%s--%s" % (org, name)
    got = {}
    for root, dirs, files in os.walk(os.path.join(cache, base)):
        for f in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, f)
            rel = os.path.relpath(full, cache)
            if os.path.islink(full):
                got[rel] = ("link", os.readlink(full))
            else:
                with open(full, "rb") as fh:
                    got[rel] = ("file", fh.read())
    return got


def check_layout(tag, cache, repo_id, repo, paths):
    want = expected_layout(cache, repo_id, repo, paths)
    got = actual_layout(cache, repo_id)
    for k in sorted(set(want) | set(got)):
        if k not in got:
            fail("%s: %s missing from the cache" % (tag, k))
        elif k not in want:
            fail("%s: unexpected %s in the cache" % (tag, k))
        elif got[k] != want[k]:
            fail("%s: %s is %r, want %r" % (tag, k, got[k][:2] if got[k][0] == "link" else (got[k][0], len(got[k][1])),
                                               want[k] if want[k][0] == "link" else (want[k][0], len(want[k][1]))))
    # every link resolves to the served bytes
    for p in paths:
        snap = os.path.join(cache, "models--%s--%s" % tuple(repo_id.split("/")), "snapshots", repo.commit, p)
        try:
            with open(snap, "rb") as fh:
                check(fh.read() == repo.files[p], "%s: %s through its link differs from the served file" % (tag, p))
        except OSError as e:
            fail("%s: %s: %s" % (tag, p, e))
    locks = os.path.join(cache, ".locks", "models--%s--%s" % tuple(repo_id.split("/")))
    for p in paths:
        if is_lfs(p):
            check(os.path.exists(os.path.join(locks, repo.etag(p) + ".lock")),
                  "%s: no lock file .locks/.../%s.lock as huggingface_hub keeps" % (tag, repo.etag(p)))


def golden():
    with open(GOLDEN) as f:
        g = json.loads(f.readline())
    want = g["text"][:-1] if g["text"].endswith("\n") else g["text"]
    return g["prompt"], want


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    with open(GGUF, "rb") as f:
        gguf = f.read()
    hub = Hub()
    try:
        tests(hub, gguf)
    finally:
        hub.close()
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("pull: all checks passed")
    return 0


def tests(hub, gguf):
    prompt, want_text = golden()
    env0 = {"HF_ENDPOINT": hub.endpoint, "LLAMAC_CACHE_DIR": os.path.join(TMP, "pack-cache"),
            "HF_HOME": os.path.join(TMP, "hf-home-empty")}

    def env_for(name, **kw):
        e = dict(env0)
        e["HF_HUB_CACHE"] = os.path.join(TMP, name)
        e.update(kw)
        return e

    # ---- a GGUF repository: quant choice, layout, second pull, token, generate -----------------------
    junk = bytes(range(256)) * 40
    g = hub.add("test/stories-GGUF", {
        "README.md": b"# stories260K\n",
        "LIC": b"MIT",  # shorter than ".gguf": the split-suffix check must not read before it
        "stories260K-Q4_K_M.gguf": gguf,
        "stories260K-Q8_0.gguf": junk + b"q8",
        "stories260K-F16-00001-of-00002.gguf": junk + b"f16a",
        "stories260K-F16-00002-of-00002.gguf": junk + b"f16b",
        "mmproj-stories-f16.gguf": junk + b"mm",
    })
    env = env_for("c-gguf", HF_TOKEN=TOKEN)
    cache = env["HF_HUB_CACHE"]
    hub.clear_log()
    rc, out, err = run(["pull", "test/stories-GGUF:q4_k_m"], env)
    if check(rc == 0, "pull :q4_k_m: exit %d: %s" % (rc, err[-500:])):
        snap = os.path.join(cache, "models--test--stories-GGUF", "snapshots", g.commit)
        check(out.strip() == os.path.join(snap, "stories260K-Q4_K_M.gguf"),
              "pull prints the file -m opens: got %r" % out.strip())
        check_layout("gguf :q4_k_m", cache, "test/stories-GGUF", g, ["stories260K-Q4_K_M.gguf"])
        check(len(err.strip().splitlines()) == 1 and "stories260K-Q4_K_M.gguf" in err,
              "stderr not a terminal: one summary line per file, got %r" % err)
    hub_reqs = hub.requests("hub")
    cdn_reqs = hub.requests("cdn")
    check(hub_reqs and all(e[3] == "Bearer " + TOKEN for e in hub_reqs),
          "the token must reach the hub on every request: %r" % [(e[1], e[2], e[3]) for e in hub_reqs])
    check(cdn_reqs and all(e[3] is None for e in cdn_reqs),
          "the token must not be sent to the CDN host: %r" % [(e[1], e[2], e[3]) for e in cdn_reqs])
    check(len(hub.requests("cdn", "GET")) == 1, "one CDN GET for one file, got %d" % len(cdn_reqs))

    hub.clear_log()
    rc, out, err = run(["pull", "test/stories-GGUF:Q4_K_M"], env)
    check(rc == 0, "second pull: exit %d: %s" % (rc, err[-300:]))
    check(not hub.requests(contains="/resolve/") and not hub.requests("cdn"),
          "a second pull must fetch nothing: %r" % hub.requests())
    check("in the cache" in err, "second pull says the file is cached: %r" % err)

    # no :QUANT with several models: Q4_K_M
    hub.clear_log()
    rc, out, err = run(["pull", "test/stories-GGUF"], env)
    check(rc == 0 and out.strip().endswith("stories260K-Q4_K_M.gguf"), "no :QUANT picks Q4_K_M: %d %r %s" % (rc, out, err))

    # generate through -m ORG/NAME (the cache only, no network)
    hub.clear_log()
    rc, out, err = run(["generate", "-m", "test/stories-GGUF:Q4_K_M", "-p", prompt, "-n", "256", "--temp", "0"], env)
    check(rc == 0 and out.startswith(want_text), "generate -m test/stories-GGUF:Q4_K_M: exit %d, %r / %s" % (rc, out[:80], err[-300:]))
    check(not hub.requests(), "-m from the cache must not touch the network: %r" % hub.requests())

    # a split model: both parts, -m opens the first
    rc, out, err = run(["pull", "test/stories-GGUF:F16"], env)
    if check(rc == 0, "pull :F16: %s" % err[-300:]):
        check(out.strip().endswith("stories260K-F16-00001-of-00002.gguf"), "split: -m opens part 1: %r" % out)
        check_layout("split gguf", cache, "test/stories-GGUF", g,
                     ["stories260K-Q4_K_M.gguf", "stories260K-F16-00001-of-00002.gguf",
                      "stories260K-F16-00002-of-00002.gguf"])
    # an unknown quant lists the choices; the vision projector is not a choice
    rc, out, err = run(["pull", "test/stories-GGUF:Q5_K_S"], env)
    check(one_line_error(rc, err) and "stories260K-Q8_0" in err and "stories260K-F16" in err and "mmproj" not in err,
          "unknown quant: one error listing the models: %d %r" % (rc, err))

    # a repository with several GGUFs and no Q4_K_M: the choices are listed
    hub.add("test/noq4-GGUF", {"m-Q8_0.gguf": junk + b"1", "m-Q6_K.gguf": junk + b"2"})
    rc, out, err = run(["pull", "test/noq4-GGUF"], env)
    check(one_line_error(rc, err) and "m-Q8_0" in err and "m-Q6_K" in err, "several GGUFs, no quant: %d %r" % (rc, err))

    # ---- the token from $HF_HOME/token; HF_HUB_OFFLINE -----------------------------------------------
    home = os.path.join(TMP, "hf-home")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "token"), "w") as f:
        f.write("hf_fromfile\n")
    hub.clear_log()
    rc, out, err = run(["pull", "test/stories-GGUF:Q8_0"], dict(env0, HF_HOME=home))
    check(rc == 0, "pull with HF_HOME: %s" % err[-300:])
    check(os.path.isdir(os.path.join(home, "hub", "models--test--stories-GGUF")), "HF_HOME/hub is the default cache")
    check(all(e[3] == "Bearer hf_fromfile" for e in hub.requests("hub")) and
          all(e[3] is None for e in hub.requests("cdn")), "token file: %r" % hub.requests())

    hub.clear_log()
    rc, out, err = run(["pull", "test/stories-GGUF:Q4_K_M"], dict(env, HF_HUB_OFFLINE="1"))
    check(rc == 0 and out.strip().endswith("stories260K-Q4_K_M.gguf") and not hub.requests(),
          "HF_HUB_OFFLINE=1 from the cache: %d %r %s %r" % (rc, out, err, hub.requests()))
    rc, out, err = run(["pull", "test/absent"], dict(env, HF_HUB_OFFLINE="1"))
    check(one_line_error(rc, err) and "HF_HUB_OFFLINE" in err and "not in the Hugging Face cache" in err and not hub.requests(),
          "HF_HUB_OFFLINE=1, absent: %d %r" % (rc, err))
    rc, out, err = run(["info", "-m", "test/absent"], env)
    check(one_line_error(rc, err) and "llamac pull test/absent" in err, "-m absent id: %d %r" % (rc, err))
    rc, out, err = run(["info", "-m", "../shared/does-not-exist/x.gguf"], env)
    check(rc == 1 and "llamac pull" not in err, "a path with two '/' is a path, not a hub id: %r" % err)

    # --pull: fetched, then loaded
    hub.add("test/tiny-GGUF", {"stories260K.gguf": gguf})
    rc, out, err = run(["generate", "-m", "test/tiny-GGUF", "--pull", "-p", prompt, "-n", "256", "--temp", "0"],
                       env_for("c-pullflag"))
    check(rc == 0 and out.startswith(want_text), "generate --pull: %d %r %s" % (rc, out[:80], err[-300:]))

    # a renamed repository: relative redirects followed for the listing and the HEADs
    hub.renamed["test/old-name-GGUF"] = "test/tiny-GGUF"
    rc, out, err = run(["pull", "test/old-name-GGUF"], env_for("c-renamed"))
    check(rc == 0 and out.strip().endswith("/stories260K.gguf"), "renamed repository: %d %r %s" % (rc, out, err[-300:]))

    # ---- a cache written by hand the way huggingface_hub 0.2x writes it ------------------------------
    hand = os.path.join(TMP, "c-hand")
    commit = commit_of("hand")
    base = os.path.join(hand, "models--test--hand-GGUF")
    os.makedirs(os.path.join(base, "blobs"))
    os.makedirs(os.path.join(base, "snapshots", commit))
    os.makedirs(os.path.join(base, "refs"))
    with open(os.path.join(base, "blobs", sha256(gguf)), "wb") as f:
        f.write(gguf)
    os.symlink("../../blobs/" + sha256(gguf), os.path.join(base, "snapshots", commit, "stories260K.gguf"))
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(commit)
    hub.clear_log()
    rc, out, err = run(["generate", "-m", "test/hand-GGUF", "-p", prompt, "-n", "256", "--temp", "0"],
                       dict(env0, HF_HUB_CACHE=hand))
    check(rc == 0 and out.startswith(want_text), "-m from huggingface_hub's cache: %d %r %s" % (rc, out[:80], err[-300:]))
    check(not hub.requests(), "no network for a cached id")

    # ---- a Hugging Face (non-GGUF) repository: the default set, --include, --exclude ------------------
    hf = hub.add("meta-test/Llama-Test", {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "generation_config.json": b"{}",
        "model-00001-of-00002.safetensors": junk + b"s1",
        "model-00002-of-00002.safetensors": junk + b"s2",
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "tokenizer.json": b"{}",
        "tokenizer_config.json": b"{}",
        "special_tokens_map.json": b"{}",
        "README.md": b"readme",
        "LICENSE": b"license",
        "pytorch_model.bin": junk + b"pt",
        "onnx/model.safetensors": junk + b"onnx",
        "original/params.json": b'{"dim": 64}',
        "original/consolidated.00.pth": junk + b"pth",
        "original/tokenizer.model": b"tok",
    })
    defaults = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json"]
    env = env_for("c-hf")
    rc, out, err = run(["pull", "meta-test/Llama-Test"], env)
    if check(rc == 0, "hf default pull: %s" % err[-300:]):
        check_layout("hf defaults", env["HF_HUB_CACHE"], "meta-test/Llama-Test", hf, defaults)
        check(out.strip() == os.path.join(env["HF_HUB_CACHE"], "models--meta-test--Llama-Test", "snapshots", hf.commit),
              "a folder model: -m opens the snapshot: %r" % out)
    env = env_for("c-meta")
    rc, out, err = run(["pull", "meta-test/Llama-Test", "--include", "original/*", "--exclude", "*.model"], env)
    if check(rc == 0, "--include original/*: %s" % err[-300:]):
        check_layout("--include original/* --exclude *.model", env["HF_HUB_CACHE"], "meta-test/Llama-Test", hf,
                     ["original/params.json", "original/consolidated.00.pth"])
        check(out.strip().endswith("/original"), "a Meta-only pull: -m opens original/: %r" % out)
    rc, out, err = run(["pull", "meta-test/Llama-Test", "--include", "*.nothing"], env)
    check(one_line_error(rc, err), "an include matching nothing: %d %r" % (rc, err))
    rc, out, err = run(["pull", "meta-test/Llama-Test:Q4_K_M"], env)
    check(one_line_error(rc, err) and "GGUF" in err, ":QUANT on a non-GGUF repository: %d %r" % (rc, err))

    # --revision: a commit, and one that does not exist
    env = env_for("c-rev")
    rc, out, err = run(["pull", "test/tiny-GGUF", "--revision", commit_of("test/tiny-GGUF")], env)
    check(rc == 0 and not os.path.exists(os.path.join(env["HF_HUB_CACHE"], "models--test--tiny-GGUF", "refs")),
          "--revision COMMIT: no ref written: %d %s" % (rc, err))
    rc, out, err = run(["pull", "test/tiny-GGUF", "--revision", "v9"], env)
    check(one_line_error(rc, err) and "v9" in err, "unknown revision: %r" % err)
    rc, out, err = run(["pull", "test/tiny-GGUF", "--revision", "../x"], env)
    check(rc != 0 and "revision" in err, "--revision ../x refused: %r" % err)

    # ---- refusals: gated, private, absent, file 404, bad ids -----------------------------------------
    hub.add("test/gated", {"config.json": b"{}"}, gated=401)
    hub.add("test/private", {"config.json": b"{}"}, gated=403)
    for rid, code in (("test/gated", "401"), ("test/private", "403")):
        rc, out, err = run(["pull", rid], env)
        check(one_line_error(rc, err) and code in err and "gated or private" in err and "HF_TOKEN" in err,
              "%s: %d %r" % (rid, rc, err))
        check(TOKEN not in err, "the token is never printed")
    rc, out, err = run(["pull", "test/nope"], env)
    check(one_line_error(rc, err) and "test/nope" in err, "absent repository: %r" % err)
    r404 = hub.add("test/missing-file", {"config.json": b"{}"})
    r404.listing = json.dumps({"sha": r404.commit, "siblings": [{"rfilename": "config.json"},
                                                                {"rfilename": "model.safetensors"}]})
    rc, out, err = run(["pull", "test/missing-file"], env)
    check(one_line_error(rc, err) and "model.safetensors" in err and "404" in err, "a file's 404 names it: %r" % err)
    for bad in ("a/b/c", "a//b", "-a/b", "a/b..c", "a/b:", "a/b:Q4 K", "a/" + "n" * 97, "a/b\\c", "/b"):
        rc, out, err = run(["pull", bad], env)
        check(rc == 2 and len(err.strip().splitlines()) == 1, "bad id %r: exit %d %r" % (bad, rc, err))

    # ---- hostile listings --------------------------------------------------------------------------
    for i, name in enumerate(("../escape.json", "/etc/passwd", "a\\..\\b.json", "sub/../../x.json", "./x.json",
                              "a//b.json", "x\u0001.json")):
        r = hub.add("test/evil%d" % i, {"config.json": b"{}"})
        r.listing = json.dumps({"sha": r.commit, "siblings": [{"rfilename": "config.json"}, {"rfilename": name}]})
        e = env_for("c-evil")
        rc, out, err = run(["pull", "test/evil%d" % i, "--include", "*"], e)
        check(one_line_error(rc, err) and "unsafe" in err, "listing with %r: %d %r" % (name, rc, err))
    check(not os.path.exists(os.path.join(TMP, "escape.json")) and not os.path.exists(os.path.join(TMP, "x.json")),
          "nothing written outside the cache")
    for i, listing in enumerate(('{"sha": "xyz", "siblings": []}', '{"siblings": []}', "[1,2]", "{",
                                 '{"sha": "%s", "siblings": [{"rfilename": 5}]}' % ("a" * 40))):
        r = hub.add("test/badjson%d" % i, {"config.json": b"{}"})
        r.listing = listing
        rc, out, err = run(["pull", "test/badjson%d" % i], env_for("c-evil"))
        check(one_line_error(rc, err), "listing %r: %d %r" % (listing, rc, err))

    # ---- network faults: 500, 429 with Retry-After, a cut connection (resumed), a corrupt body -------
    flaky = hub.add("test/flaky-GGUF", {"m-Q4_K_M.gguf": junk * 20 + b"flaky"})
    flaky.faults[("api", "")] = [(500, {})]
    flaky.faults[("head", "m-Q4_K_M.gguf")] = [(429, {"Retry-After": "1"})]
    flaky.faults[("cdn", "m-Q4_K_M.gguf")] = ["cut"]
    env = env_for("c-flaky")
    hub.clear_log()
    rc, out, err = run(["pull", "test/flaky-GGUF"], env, timeout=180)
    if check(rc == 0, "flaky: exit %d: %s" % (rc, err[-500:])):
        check_layout("flaky", env["HF_HUB_CACHE"], "test/flaky-GGUF", flaky, ["m-Q4_K_M.gguf"])
        gets = hub.requests("cdn", "GET")
        half = len(flaky.files["m-Q4_K_M.gguf"]) // 2
        check(len(gets) == 2 and gets[0][4] is None and gets[1][4] == "bytes=%d-" % half,
              "a cut download resumes with Range bytes=%d-: %r" % (half, [(e[1], e[4]) for e in gets]))
        check(err.count("retrying") == 3, "each retry is reported: %r" % err)

    # a partial file left by a killed pull is resumed
    part = hub.add("test/partial-GGUF", {"m.gguf": junk * 10 + b"partial"})
    env = env_for("c-partial")
    blobs = os.path.join(env["HF_HUB_CACHE"], "models--test--partial-GGUF", "blobs")
    os.makedirs(blobs)
    with open(os.path.join(blobs, part.etag("m.gguf") + ".incomplete"), "wb") as f:
        f.write(part.files["m.gguf"][:1000])
    hub.clear_log()
    rc, out, err = run(["pull", "test/partial-GGUF"], env)
    if check(rc == 0, "partial: %s" % err[-300:]):
        check_layout("resumed", env["HF_HUB_CACHE"], "test/partial-GGUF", part, ["m.gguf"])
        check([e[4] for e in hub.requests("cdn", "GET")] == ["bytes=1000-"], "resume from the .incomplete: %r" % hub.requests("cdn"))

    # a pull killed (SIGKILL) in the middle of a file: no blob or link under a final name, and the next
    # pull resumes from what the killed one wrote
    killed = hub.add("test/killed-GGUF", {"m.gguf": os.urandom(2 << 20)})
    env = env_for("c-killed")
    blobs = os.path.join(env["HF_HUB_CACHE"], "models--test--killed-GGUF", "blobs")
    inc = os.path.join(blobs, killed.etag("m.gguf") + ".incomplete")
    hub.cdn_delay = 0.05
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    e.update(env)
    p = subprocess.Popen([LLAMAC, "pull", "test/killed-GGUF"], env=e, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        # generous: only a hang should end this wait, never a slow or sanitized build
        for _ in range(6000):
            if os.path.exists(inc) and os.path.getsize(inc) >= 65536:
                break
            time.sleep(0.1)
        p.kill()
    finally:
        p.wait(timeout=60)
        hub.cdn_delay = 0
    have = os.path.getsize(inc) if os.path.exists(inc) else 0
    if check(0 < have < len(killed.files["m.gguf"]), "the killed pull left part of the file (%d bytes)" % have):
        check(sorted(os.listdir(blobs)) == [os.path.basename(inc)] and
              not os.path.exists(os.path.join(env["HF_HUB_CACHE"], "models--test--killed-GGUF", "snapshots")),
              "a killed pull leaves only the .incomplete: %r" % os.listdir(blobs))
        hub.clear_log()
        rc, out, err = run(["pull", "test/killed-GGUF"], env)
        if check(rc == 0, "pull after a kill: %s" % err[-300:]):
            check_layout("after a kill", env["HF_HUB_CACHE"], "test/killed-GGUF", killed, ["m.gguf"])
            ranges = [x[4] for x in hub.requests("cdn", "GET")]
            check(len(ranges) == 1 and ranges[0] and int(ranges[0][6:-1]) == have,
                  "resumed after the kill from the bytes on disk (%d): %r" % (have, ranges))

    # too many 429s with a long Retry-After: stop at once with a message
    slow = hub.add("test/ratelimited-GGUF", {"m.gguf": junk})
    slow.faults[("head", "m.gguf")] = [(429, {"Retry-After": "3600"})]
    rc, out, err = run(["pull", "test/ratelimited-GGUF"], env_for("c-rl"))
    check(one_line_error(rc, err) and "429" in err and "3600" in err, "Retry-After 3600: %r" % err)

    bad = hub.add("test/corrupt-GGUF", {"m.gguf": junk * 4})
    bad.faults[("corrupt", "m.gguf")] = b"X" + junk[1:] + junk * 3
    env = env_for("c-corrupt")
    rc, out, err = run(["pull", "test/corrupt-GGUF"], env)
    check(one_line_error(rc, err) and "sha256" in err and "deleted" in err, "corrupt body: %d %r" % (rc, err))
    left = [f for f in actual_layout(env["HF_HUB_CACHE"], "test/corrupt-GGUF")]
    check(not left, "a corrupt download leaves nothing in the repository's cache folder: %r" % left)

    # an X-Linked-Size larger than the disk
    huge = hub.add("test/huge-GGUF", {"m.gguf": junk})
    huge.faults[("size", "m.gguf")] = 1 << 49
    env = env_for("c-huge")
    rc, out, err = run(["pull", "test/huge-GGUF"], env)
    check(one_line_error(rc, err) and "disk space" in err and not hub.requests("cdn", contains=huge.etag("m.gguf")),
          "huge X-Linked-Size: %d %r" % (rc, err))
    check(not [k for k in actual_layout(env["HF_HUB_CACHE"], "test/huge-GGUF") if "/snapshots/" in k
               or k.endswith(huge.etag("m.gguf"))], "nothing under a final name after a refused download")

    # ---- two pulls at once ---------------------------------------------------------------------------
    big = hub.add("test/concurrent-GGUF", {"m-Q4_K_M.gguf": os.urandom(3 << 20)})
    env = env_for("c-concurrent")
    hub.cdn_delay = 0.02
    hub.clear_log()
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    e.update(env)
    procs = [subprocess.Popen([LLAMAC, "pull", "test/concurrent-GGUF"], env=e, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    hub.cdn_delay = 0
    for o, er, rc in results:
        check(b"Sanitizer" not in er and b"runtime error:" not in er, "concurrent pull: a sanitizer report: %r" % er[-1500:])
        check(rc == 0, "concurrent pull: exit %d: %s" % (rc, er.decode(errors="replace")[-300:]))
    check_layout("concurrent", env["HF_HUB_CACHE"], "test/concurrent-GGUF", big, ["m-Q4_K_M.gguf"])
    check(len(hub.requests("cdn", "GET")) == 1, "the blob is fetched once by two pulls: %d GETs" % len(hub.requests("cdn", "GET")))


if __name__ == "__main__":
    sys.exit(main())
