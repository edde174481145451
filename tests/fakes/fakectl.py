"""fakectl: start, drive and stop the fakes from a test (standard library only).

    sys.path.insert(0, os.path.join(EMBER_SOURCE_DIR, "tests", "fakes"))
    from fakectl import DockerFake, KubeFake, container_id

    d = DockerFake(tmp, {"containers": [{"id": container_id("web"), "name": "web-1", ...}]})
    d.socket                  # pass to the agent as --docker-socket
    d.set_state({...})        # written atomically; the fake picks it up within 100 ms
    d.requests()              # the request log: [{"method", "path", "mode", "time"}, ...]
    d.stop()

    k = KubeFake(tmp, {"pods": [...], "many": 0}, token="t0")
    k.url, k.ca, k.token_file # --kube-api, --kube-ca-file, --kube-token-file
    k.set_token("t1")         # rotation: the old token gets 401 from the next request on
    k.requests()              # [{"method", "path", "auth", "mode", "time"}, ...]
    k.stop()
"""
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DOCKER_API = os.path.join(HERE, "docker_api.py")
KUBE_API = os.path.join(HERE, "kube_api.py")


def container_id(seed):
    """A container id (64 hex digits) made from seed: the same seed, the same id."""
    return hashlib.sha256(str(seed).encode()).hexdigest()


def write_json(path, obj):
    """Writes obj as JSON to path atomically (temp file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def read_log(path):
    """The JSON lines of a log a fake is appending to (a line still being written is left out)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.endswith("\n") and l.strip()]


class _Fake:
    def _start(self, argv, what):
        self.stderr = open(self.log_path + ".stderr", "w")
        self.proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            raise RuntimeError(f"{what} did not start: {line!r}")
        return line.split(None, 2)[2].strip()

    def set_state(self, state):
        write_json(self.state_path, state)

    def requests(self):
        return read_log(self.log_path)

    def stop(self):
        """SIGTERM; returns the seconds it took to exit."""
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return time.time() - t0


class DockerFake(_Fake):
    def __init__(self, tmp, state=None, name="docker"):
        self.socket = os.path.join(tmp, f"{name}.sock")
        self.state_path = os.path.join(tmp, f"{name}-state.json")
        self.log_path = os.path.join(tmp, f"{name}-requests.jsonl")
        self.set_state(state if state is not None else {"containers": [], "mode": "ok"})
        self._start([DOCKER_API, "--socket", self.socket, "--state", self.state_path,
                     "--log", self.log_path], "docker_api.py")

    def connect(self, timeout=10):
        return UnixHTTPConnection(self.socket, timeout=timeout)


class KubeFake(_Fake):
    def __init__(self, tmp, state=None, token="test-token", name="kube", tls_dir=None):
        self.state_path = os.path.join(tmp, f"{name}-state.json")
        self.log_path = os.path.join(tmp, f"{name}-requests.jsonl")
        self.tls_dir = tls_dir or os.path.join(tmp, f"{name}-tls")
        self.ca = os.path.join(self.tls_dir, "ca.crt")
        self.token_file = os.path.join(tmp, f"{name}-token")
        self.token = token
        self.set_state(state if state is not None else {"pods": [], "mode": "ok"})
        argv = [KUBE_API, "--state", self.state_path, "--tls-dir", self.tls_dir,
                "--log", self.log_path]
        if token is not None:
            self.set_token(token)
            argv += ["--token-file", self.token_file]
        self.port = int(self._start(argv, "kube_api.py"))
        self.url = f"https://127.0.0.1:{self.port}"

    def set_token(self, token):
        self.token = token
        with open(self.token_file + ".tmp", "w") as f:
            f.write(token + "\n")
        os.replace(self.token_file + ".tmp", self.token_file)

    def connect(self, timeout=10, host="127.0.0.1"):
        ctx = ssl.create_default_context(cafile=self.ca)
        return http.client.HTTPSConnection(host, self.port, timeout=timeout, context=ctx)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (the Docker API's transport)."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s
