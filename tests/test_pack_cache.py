#!/usr/bin/python3
"""The packed-weights cache file (src/model/pack_cache.h, README "Packed-weights cache").

A synthetic tiny Llama 3 in Q4_0 (and, for a few of the cases, one in Q8_0; every matrix packed: 2 layers, the tied output of
128256 rows is 9 chunks of the cache). The reference for every run is the same model with the cache
off (LLAMAC_PACK_CACHE=0, weights packed in memory): the logits of `llamac logits` (all 128256, as
printed) and the greedy tokens of `generate` must be bit-identical with a cache being written, with
a cache being read, and after each of the following, which must also leave a correct cache behind:

* the model rewritten in place with other weights (same size, same inode, new mtime), the model's
  mtime changed alone, the model grown;
* the cache file truncated, replaced with garbage of the right size, one byte of its packed data
  flipped, one byte of its tensor table flipped;
* a symlink, a FIFO, a folder planted at the cache's name (left alone; no hang), a cache folder
  that cannot be created or written, LLAMAC_PACK_CACHE=0 (no file written).

Whether a run read the cache or wrote a new one is told by the file's inode (a new cache is renamed
into place), never by timing.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
TMP = os.environ.get("LLAMAC_TMP") or tempfile.gettempdir()
TIMEOUT = 300  # catches a hang only
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, cache_dir, extra_env=None):
    env = dict(os.environ)
    env.pop("LLAMAC_PACK_CACHE", None)
    env["LLAMAC_CACHE_DIR"] = cache_dir
    env.update(extra_env or {})
    r = subprocess.run([LLAMAC] + args, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        sys.exit(f"llamac {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def outputs(model, cache_dir, extra_env=None):
    logits = run(["logits", "-m", model, "-p", "The quick brown fox", "--threads", "2"], cache_dir, extra_env)
    gen = run(["generate", "-m", model, "-p", "Once upon a time", "-n", "24", "--temp", "0", "--threads", "2"],
              cache_dir, extra_env)
    return logits, gen


def reference(model):
    return outputs(model, os.path.join(WORK, "unused"), {"LLAMAC_PACK_CACHE": "0"})


def cache_files(cache_dir):
    if not os.path.isdir(cache_dir):
        return []
    return sorted(os.listdir(cache_dir))


def the_cache(cache_dir):
    names = [n for n in cache_files(cache_dir) if n.endswith(".llcpack")]
    check(len(names) == 1, f"one cache file in {cache_dir}: {cache_files(cache_dir)}")
    return os.path.join(cache_dir, names[0])


def no_leftovers(cache_dir, what):
    tmp = [n for n in cache_files(cache_dir) if n.endswith(".tmp")]
    check(not tmp, f"{what}: no temporary files left ({tmp})")


def synth(path, qtype, seed):
    r = subprocess.run([LLAMAC, "synth", "--preset", "tiny", "--type", qtype, "--seed", str(seed), "-o", path],
                       capture_output=True, text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        sys.exit(f"synth failed: {r.stderr.strip()}")


def case(model, cache_dir, ref, what):
    """A run whose outputs must equal ref; returns the cache file's inode afterwards (None: no file)."""
    got = outputs(model, cache_dir)
    check(got[0] == ref[0], f"{what}: logits bit-identical to in-memory packing")
    check(got[1] == ref[1], f"{what}: greedy tokens identical to in-memory packing")
    no_leftovers(cache_dir, what)
    names = [n for n in cache_files(cache_dir) if n.endswith(".llcpack")]
    return os.lstat(os.path.join(cache_dir, names[0])).st_ino if names else None


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def test_model(qtype, full):
    model = os.path.join(WORK, f"tiny-{qtype}.gguf")
    synth(model, qtype, 1)
    ref = reference(model)
    cache = os.path.join(WORK, f"cache-{qtype}")

    ino = case(model, cache, ref, f"{qtype} cache written")
    path = the_cache(cache)
    size = os.path.getsize(path)
    check(size > 9 << 20, f"{qtype} cache holds the packed weights ({size} bytes)")
    check(case(model, cache, ref, f"{qtype} cache read") == ino, f"{qtype} second run reads the cache (same inode)")
    check(os.path.getsize(path) == size, f"{qtype} cache unchanged by a read")

    # Damaged cache files: each is a miss, then replaced by a correct one.
    damages = [
        ("truncated", lambda p: os.truncate(p, size // 2)),
        ("garbage", lambda p: open(p, "wb").write(os.urandom(size))),
        ("flipped packed byte", lambda p: flip_byte(p, size - 1000)),
        ("flipped packed byte in the middle", lambda p: flip_byte(p, size // 2 + 12345)),
        ("flipped table byte", lambda p: flip_byte(p, 200)),
        ("empty", lambda p: os.truncate(p, 0)),
    ]
    for name, damage in damages if full else damages[2:3]:
        damage(path)
        ino_damaged = os.lstat(path).st_ino
        ino = case(model, cache, ref, f"{qtype} {name} cache")
        check(ino is not None and ino != ino_damaged and os.path.getsize(path) == size,
              f"{qtype} {name} cache replaced by a fresh one")
        check(case(model, cache, ref, f"{qtype} after {name}") == ino, f"{qtype} fresh cache after {name} is read")
    if not full:
        return None

    # The model changes: other weights written in place (same size and inode, new mtime).
    other = os.path.join(WORK, f"tiny-{qtype}-seed2.gguf")
    synth(other, qtype, 2)
    check(os.path.getsize(other) == os.path.getsize(model), f"{qtype} the seed-2 model has the same size")
    ino_model = os.stat(model).st_ino
    with open(other, "rb") as src, open(model, "r+b") as dst:
        dst.write(src.read())
    st = os.stat(model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    check(os.stat(model).st_ino == ino_model, f"{qtype} model rewritten in place")
    ref2 = reference(model)
    check(ref2[0] != ref[0], f"{qtype} the rewritten model has other logits")
    ino = case(model, cache, ref2, f"{qtype} model rewritten in place")
    check(case(model, cache, ref2, f"{qtype} rewritten model, cache read") == ino, f"{qtype} rewritten model's cache is read")

    # mtime alone
    st = os.stat(model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ino2 = case(model, cache, ref2, f"{qtype} model touched")
    check(ino2 != ino, f"{qtype} touching the model invalidates its cache")

    # size: bytes appended after the tensor data (the loader ignores them)
    with open(model, "ab") as f:
        f.write(b"\0" * 4096)
    ref3 = reference(model)
    check(ref3 == ref2, f"{qtype} trailing bytes change nothing")
    ino3 = case(model, cache, ref3, f"{qtype} model grown")
    check(ino3 != ino2, f"{qtype} a grown model invalidates its cache")
    return model, ref3, cache


def test_hostile(model, ref, cache):
    name = os.path.basename(the_cache(cache))

    # A symlink at the cache's name: never followed, never replaced.
    target = os.path.join(WORK, "symlink-target")
    with open(target, "wb") as f:
        f.write(b"not a cache")
    d = os.path.join(WORK, "cache-symlink")
    os.makedirs(d)
    os.symlink(target, os.path.join(d, name))
    case(model, d, ref, "symlink at the cache's name")
    check(os.path.islink(os.path.join(d, name)), "the symlink is left in place")
    with open(target, "rb") as f:
        check(f.read() == b"not a cache", "the symlink's target is untouched")
    # ... also when it points at a valid cache file: not followed
    os.remove(os.path.join(d, name))
    os.symlink(os.path.join(cache, name), os.path.join(d, name))
    case(model, d, ref, "symlink to a valid cache")
    check(os.path.islink(os.path.join(d, name)), "that symlink is left in place too")

    # A FIFO at the name: no hang (the timeout would fail the test), left alone.
    d = os.path.join(WORK, "cache-fifo")
    os.makedirs(d)
    os.mkfifo(os.path.join(d, name))
    case(model, d, ref, "FIFO at the cache's name")
    check(stat.S_ISFIFO(os.lstat(os.path.join(d, name)).st_mode), "the FIFO is left in place")

    # A folder at the name.
    d = os.path.join(WORK, "cache-folder")
    os.makedirs(os.path.join(d, name))
    case(model, d, ref, "folder at the cache's name")
    check(os.path.isdir(os.path.join(d, name)), "the folder is left in place")

    # Cache folders that cannot be made or written (tests may run as root, who ignores modes):
    # under a regular file, and in /proc.
    f = os.path.join(WORK, "a-file")
    open(f, "wb").close()
    check(case(model, os.path.join(f, "sub"), ref, "cache folder under a regular file") is None, "no cache there")
    case(model, f, ref, "cache folder is a regular file")
    case(model, "/proc/self", ref, "cache folder not writable (/proc/self)")

    # Temporary files of writers killed mid-write are removed by the next writer; a live one's is kept
    # (pid 999999999 cannot exist: above Linux's pid_max).
    d = os.path.join(WORK, "cache-temps")
    os.makedirs(d)
    dead = os.path.join(d, f".{name}.999999999.1.tmp")
    live = os.path.join(d, f".{name}.{os.getpid()}.1.tmp")
    other = os.path.join(d, f".other-model.llcpack.999999999.1.tmp")
    for p in (dead, live, other):
        with open(p, "wb") as f:
            f.write(b"partial")
    check(outputs(model, d) == ref, "dead writers' temporary files present: same outputs")
    check(not os.path.exists(dead), "a dead writer's temporary file is removed")
    check(os.path.exists(live) and os.path.exists(other), "a live writer's and another cache's temporary files are kept")
    for p in (live, other):
        os.remove(p)

    # Turned off: nothing written.
    d = os.path.join(WORK, "cache-off")
    got = outputs(model, d, {"LLAMAC_PACK_CACHE": "0"})
    check(got == ref, "LLAMAC_PACK_CACHE=0: same outputs")
    check(cache_files(d) == [], "LLAMAC_PACK_CACHE=0: no cache folder or file written")

    # The default folder: $XDG_CACHE_HOME/llamac (a relative XDG_CACHE_HOME is ignored for ~/.cache).
    xdg = os.path.join(WORK, "xdg")
    env = {"XDG_CACHE_HOME": xdg}
    e = dict(os.environ)
    e.pop("LLAMAC_CACHE_DIR", None)
    e.pop("LLAMAC_PACK_CACHE", None)
    e.update(env)
    r = subprocess.run([LLAMAC, "logits", "-m", model, "-p", "The quick brown fox", "--threads", "2"], env=e,
                       capture_output=True, text=True, timeout=TIMEOUT)
    check(r.returncode == 0 and r.stdout == ref[0], "XDG_CACHE_HOME: same logits")
    check(len([n for n in cache_files(os.path.join(xdg, "llamac")) if n.endswith(".llcpack")]) == 1,
          "XDG_CACHE_HOME/llamac holds the cache")


if __name__ == "__main__":
    os.makedirs(TMP, exist_ok=True)
    WORK = tempfile.mkdtemp(prefix="pack_cache_", dir=TMP)
    try:
        test_model("q8_0", False)
        test_hostile(*test_model("q4_0", True))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    if failures:
        sys.exit(f"{len(failures)} failure(s): {failures}")
    print("all ok")
