"""Starting and stopping `llamac serve` for the tests, on a loopback port the server picks (--port 0).

A Server is a context manager: it is stopped (SIGTERM, then SIGKILL if it hangs) however the test
ends. Timeouts are generous: they only catch hangs (the suite may run under ASan on a loaded machine).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
SLOW = 4 if os.environ.get("LLAMAC_SANITIZE") else 1
HANG = 120 * SLOW  # seconds after which something is considered hung


class Server:
    def __init__(self, model, *args):
        self.args = [LLAMAC, "serve", "-m", model, "--port", "0", "--threads", "2"] + list(args)
        self.lines = []
        self.port = None
        self.ready = threading.Event()
        self.p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(HANG) or self.port is None:
            self.kill()
            raise RuntimeError("llamac serve did not start: " + " | ".join(self.lines[-5:]))

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = re.search(r"listening on http://\S+:(\d+)$", line)
            if m:
                self.port = int(m.group(1))
                self.ready.set()
        self.ready.set()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def stop(self, sig=signal.SIGTERM, timeout=HANG):
        """Sends sig and waits for the exit; returns the exit code (None if it hung and was killed)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.reader.join(10)
        return self.p.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def conn(self, timeout=HANG):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=HANG):
        """(status, headers dict with lower-case names, body bytes)."""
        c = self.conn(timeout)
        try:
            h = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post(self, path, obj, headers=None):
        status, h, data = self.request("POST", path, obj, headers)
        try:
            js = json.loads(data) if data else None
        except ValueError:
            js = None
        return status, js, h

    def raw(self, data, shut_wr=False, timeout=30 * SLOW, read=True):
        """Sends raw bytes on a fresh connection; returns what came back until the server closed (or
        the timeout)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
            out = b""
            if read:
                try:
                    while True:
                        k = s.recv(65536)
                        if not k:
                            break
                        out += k
                except (socket.timeout, ConnectionResetError):
                    pass
            return out
        finally:
            s.close()

    def metrics(self):
        status, _, data = self.request("GET", "/metrics")
        assert status == 200, status
        out = {}
        for line in data.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([^{ ]+)(\{[^}]*\})? (\S+)$', line)
            if m:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
                labels.pop("model_name", None)
                key = m.group(1) + "".join("|%s=%s" % kv for kv in sorted(labels.items()))
                out[key] = float(m.group(3))
        return out

    def wait_idle(self, timeout=HANG):
        """Waits until nothing runs or waits and no KV block is in use; returns the last metrics."""
        end = time.time() + timeout
        while True:
            m = self.metrics()
            if (m.get("vllm:num_requests_running") == 0 and m.get("vllm:num_requests_waiting") == 0 and
                    m.get("llamac:kv_cache_blocks_used") == 0):
                return m
            if time.time() > end:
                return m
            time.sleep(0.05)
