#!/usr/bin/python3
"""Where llamac writes its outputs: convert, quantize, synth (a GGUF, or a Hugging Face / Meta folder)
and batch --output (README, "Output files").

Expected, from the rule the README states (not from llamac's output):
* an existing OUT that is not a regular file -- a character device (made with mknod when running as
  root, else skipped), a FIFO, a socket, a folder, a symbolic link to one of those, a symbolic link to
  nothing -- is refused before any work: exit 1, one `llamac: error:` line, the node unchanged (same
  inode, type and device number), nothing else in its folder (no temporary file);
* a folder output (synth --format hf|meta) refuses an OUT that is not a folder the same way, and each
  file inside the folder follows the file rule (a FIFO named config.json is refused, not opened: on the
  old code that open blocked forever);
* a symbolic link to a regular file is written through: the link stays, its target gets the new bytes;
* a pre-existing OUT.tmp (here a symbolic link to another file) is neither used nor touched;
* a new file gets 0666 less the umask (a new folder 0777 less the umask);
* a write that fails midway (RLIMIT_FSIZE: EFBIG with SIGXFSZ ignored; killed by SIGXFSZ otherwise)
  and SIGINT during a long synth leave no temporary file, and an existing OUT keeps its old bytes;
* batch without --output still writes its JSONL to a pipe.
"""
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMAC = os.path.abspath(os.environ.get("LLAMAC", "build/llamac"))
SHARED = os.path.abspath(os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared")))
TMP = os.path.join(os.environ.get("LLAMAC_TMP") or tempfile.gettempdir(), "output_paths")
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
TOK512 = os.path.join(SHARED, "models", "stories260K", "tok512.model")
TIMEOUT = 120  # only catches a hang (the old code blocked opening a FIFO)

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)
    return cond


def run(args, cwd, umask=None, fsize=None, xfsz_ignored=True):
    def pre():
        if umask is not None:
            os.umask(umask)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN if xfsz_ignored else signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    try:
        p = subprocess.run([LLAMAC] + args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                           preexec_fn=pre, restore_signals=False)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s" % TIMEOUT


def fresh(name):
    d = os.path.join(TMP, name)
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    return d


def snapshot(d):
    """Every entry under d: type, inode, device number, size and, for files, the bytes."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[os.path.relpath(p, d)] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev, data)
    return out


def temp_files(d):
    return sorted(os.path.relpath(os.path.join(r, n), d) for r, _, fs in os.walk(d) for n in fs if ".tmp" in n)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_requests(path):
    with open(path, "w") as f:
        for p in ["Once upon a time", "The cat", "Lily"]:
            f.write(json.dumps({"prompt": p, "max_tokens": 4}) + "\n")


# Every command that writes an output file, with OUT in place of the path.
FILE_COMMANDS = {
    "convert": ["convert", STORIES, "OUT"],
    "quantize": ["quantize", STORIES, "OUT", "q8_0"],
    "synth": ["synth", "--preset", "tiny-llama2", "--vocab", TOK512, "-o", "OUT"],
    "batch": ["batch", "-m", STORIES, "--input", "REQ", "--output", "OUT", "--temp", "0", "--threads", "1"],
}
FOLDER_COMMANDS = {
    "synth-hf": ["synth", "--preset", "tiny-llama2", "--vocab", TOK512, "--format", "hf", "-o", "OUT"],
    "synth-meta": ["synth", "--preset", "tiny-llama2", "--vocab", TOK512, "--format", "meta", "-o", "OUT", "--type", "bf16"],
}


def argv(template, d, out):
    return [out if a == "OUT" else os.path.join(d, "req.jsonl") if a == "REQ" else a for a in template]


def make_node(d, kind):
    """Creates OUT in d as kind; returns False when it cannot be made here."""
    out = os.path.join(d, "out")
    if kind == "chardev":
        if os.geteuid() != 0:
            return False
        try:
            os.mknod(out, stat.S_IFCHR | 0o644, os.stat("/dev/null").st_rdev)
        except PermissionError:
            return False
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cwd = os.getcwd()
        os.chdir(d)  # a relative name: socket paths are limited to 108 bytes
        try:
            s.bind("out")
        finally:
            os.chdir(cwd)
            s.close()
    elif kind == "folder":
        os.mkdir(out)
        open(os.path.join(out, "inside"), "w").write("keep")
    elif kind == "file":
        open(out, "w").write("not a folder")
    elif kind.startswith("link-to-"):
        if not make_node(d, kind[len("link-to-"):]):
            return False
        os.rename(out, os.path.join(d, "target"))
        os.symlink("target", out)
    elif kind == "dangling-link":
        os.symlink("nowhere", out)
    return True


def refused(label, template, kinds):
    for kind in kinds:
        d = fresh("refuse")
        write_requests(os.path.join(d, "req.jsonl"))
        if not make_node(d, kind):
            print("skip %s: OUT a %s (needs root to mknod)" % (label, kind), flush=True)
            continue
        before = snapshot(d)
        rc, _, err = run(argv(template, d, os.path.join(d, "out")), d)
        lines = err.strip().splitlines()
        after = snapshot(d)
        check(rc == 1 and len(lines) == 1 and lines[0].startswith("llamac: error:") and after == before,
              "%s, OUT a %s: refused (exit %s, %r), nothing changed%s" % (
                  label, kind, rc, err.strip()[-160:],
                  "" if after == before else " -- changed: %s" % sorted(set(after.items()) ^ set(before.items()))[:4]))


def main():
    os.makedirs(TMP, exist_ok=True)
    file_kinds = ["chardev", "fifo", "socket", "folder", "link-to-chardev", "link-to-fifo", "link-to-folder", "dangling-link"]
    for label, t in FILE_COMMANDS.items():
        refused(label, t, file_kinds)
    for label, t in FOLDER_COMMANDS.items():
        refused(label, t, ["chardev", "fifo", "socket", "file", "link-to-file", "dangling-link"])

    # A file inside an output folder follows the file rule.
    for label, t in FOLDER_COMMANDS.items():
        d = fresh("infolder")
        out = os.path.join(d, "out")
        os.mkdir(out)
        inner = "config.json" if label == "synth-hf" else "params.json"
        os.mkfifo(os.path.join(out, inner))
        rc, _, err = run(argv(t, d, out), d)
        st = os.lstat(os.path.join(out, inner))
        check(rc == 1 and len(err.strip().splitlines()) == 1 and stat.S_ISFIFO(st.st_mode) and not temp_files(d),
              "%s: a FIFO named %s in the folder is refused, left a FIFO, no temporary file (exit %s, %r)" % (
                  label, inner, rc, err.strip()[-160:]))

    # A symbolic link to a regular file is written through; a pre-existing OUT.tmp is not used.
    for label, t in FILE_COMMANDS.items():
        d = fresh("through")
        write_requests(os.path.join(d, "req.jsonl"))
        os.mkdir(os.path.join(d, "real"))
        target = os.path.join(d, "real", "model")
        open(target, "w").write("old")
        out = os.path.join(d, "out")
        os.symlink(os.path.join("real", "model"), out)
        victim = os.path.join(d, "victim")
        open(victim, "w").write("victim")
        os.symlink("victim", out + ".tmp")
        open(target + ".tmp", "w").write("stale")
        rc, _, err = run(argv(t, d, out), d)
        with open(target, "rb") as f:
            head = f.read(4)
        expect = b"{\"in" if label == "batch" else b"GGUF"
        check(rc == 0 and os.path.islink(out) and os.readlink(out) == os.path.join("real", "model") and head == expect,
              "%s, OUT a symbolic link to a file: the link stays, the target is replaced (exit %s, head %r, %r)" % (
                  label, rc, head, err.strip()[-160:]))
        check(os.path.islink(out + ".tmp") and read(victim) == b"victim" and read(target + ".tmp") == b"stale"
              and temp_files(d) == ["out.tmp", "real/model.tmp"],
              "%s: OUT.tmp (a symbolic link) and the target's .tmp are untouched, no other temporary file (%s)" % (
                  label, temp_files(d)))

    # Permissions of new files (and folders) follow the umask.
    for umask in (0o027, 0o002):
        for label, t in list(FILE_COMMANDS.items()) + list(FOLDER_COMMANDS.items()):
            d = fresh("umask")
            write_requests(os.path.join(d, "req.jsonl"))
            out = os.path.join(d, "out")
            rc, _, err = run(argv(t, d, out), d, umask=umask)
            modes = {}
            if rc == 0:
                modes["out"] = stat.S_IMODE(os.stat(out).st_mode)
                if os.path.isdir(out):
                    for n in os.listdir(out):
                        modes[n] = stat.S_IMODE(os.stat(os.path.join(out, n)).st_mode)
            want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
            ok = rc == 0 and all(m == (want_dir if n == "out" and os.path.isdir(out) else want_file) for n, m in modes.items())
            check(ok, "%s, umask %03o: new files %03o, folders %03o (%s; exit %s %r)" % (
                label, umask, want_file, want_dir, {n: "%03o" % m for n, m in modes.items()}, rc, err.strip()[-120:]))

    # A write that fails midway leaves nothing, and an existing OUT keeps its bytes.
    for label, t in list(FILE_COMMANDS.items()) + list(FOLDER_COMMANDS.items()):
        limit = 100 if label == "batch" else 200000  # below the size of each output (batch: ~300 bytes)
        for ignored in (True, False):
            d = fresh("efbig")
            write_requests(os.path.join(d, "req.jsonl"))
            out = os.path.join(d, "out")
            if not label.startswith("synth-"):
                open(out, "w").write("old bytes")
            rc, _, err = run(argv(t, d, out), d, fsize=limit, xfsz_ignored=ignored)
            kept = label.startswith("synth-") or read(out) == b"old bytes"
            if ignored:
                good = rc == 1 and len([l for l in err.splitlines() if l.startswith("llamac: error:")]) == 1
                how = "exit 1 with one error line"
            else:
                good = rc == -signal.SIGXFSZ
                how = "killed by SIGXFSZ"
            check(good and kept and not temp_files(d), "%s, file size limit %d (SIGXFSZ %s): %s, old OUT kept, no "
                  "temporary file (exit %s, %r, left %s)" % (label, limit, "ignored" if ignored else "default", how, rc,
                                                             err.strip()[-120:], temp_files(d)))

    # SIGINT while a long synth writes: the temporary file goes too.
    d = fresh("sigint")
    out = os.path.join(d, "big.gguf")
    open(out, "w").write("old bytes")
    p = subprocess.Popen([LLAMAC, "synth", "--preset", "llama-3.2-1b", "--layers", "1", "--type", "q8_0", "--vocab", TOK512,
                          "-o", out], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = False
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and p.poll() is None:
        if temp_files(d):
            seen = True
            p.send_signal(signal.SIGINT)
            break
        time.sleep(0.002)
    _, err = p.communicate(timeout=TIMEOUT)
    if seen and p.returncode == 0:
        print("skip SIGINT: the synth finished before the signal arrived", flush=True)
    else:
        check(seen and p.returncode == -signal.SIGINT and not temp_files(d) and read(out) == b"old bytes",
              "SIGINT during synth: killed by it, no temporary file, old OUT kept (seen %s, exit %s, left %s)" % (
                  seen, p.returncode, temp_files(d)))

    # batch without --output: JSONL through a pipe, as before.
    d = fresh("stdout")
    write_requests(os.path.join(d, "req.jsonl"))
    rc, stdout, err = run(["batch", "-m", STORIES, "--input", os.path.join(d, "req.jsonl"), "--temp", "0", "--threads", "1"], d)
    try:
        rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    except ValueError:
        rows = []
    check(rc == 0 and [r.get("index") for r in rows] == [0, 1, 2] and os.listdir(d) == ["req.jsonl"],
          "batch to a pipe: three results in order, no file written (exit %s, %d rows)" % (rc, len(rows)))

    print("output paths: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
