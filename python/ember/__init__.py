"""ember: start Ember, the continuous profiler, on this Python process.

    import ember
    ember.watch(server="http://pyroscope:4040")      # before CUDA initializes

watch() prepares the process for GPU profiles (CUDA_INJECTION64_PATH and the EMBER_GPU_*
settings in this process's environment, read by CUDA when it initializes) and starts the Ember
sidecar, `ember run --pid <this process>`, which profiles the process until it exits. Where a
host agent's GPU socket is already there, it only sets the environment and lets that agent
collect. It never raises into the application: a sidecar that cannot start gives one warning
and None.

Configuration as the command line's: arguments, else the EMBER_<OPTION> environment variables
(EMBER_SERVER, EMBER_INTERVAL, ...) and EMBER_TAG_<KEY>=VALUE labels, which the sidecar reads
itself. The `ember` binary: EMBER_BINARY, else one bundled in this package (ember/bin/ember),
else `ember` on PATH; its libraries (libember_cupti.so) beside it.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

__all__ = ["watch", "find_ember", "EmberNotFound"]

DEFAULT_GPU_SOCKET = "/run/ember/gpu.sock"
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39
_warned = set()
_sidecars = []  # the sidecars started: they live as long as the process


class EmberNotFound(RuntimeError):
    """No `ember` binary: not bundled, not on PATH, not named by EMBER_BINARY."""


def _warn_once(key, msg):
    if key not in _warned:
        _warned.add(key)
        warnings.warn("ember: " + msg, RuntimeWarning, stacklevel=4)  # the caller of watch()


def find_ember(explicit=None):
    """The path of the `ember` binary to run: explicit, EMBER_BINARY, bundled, else PATH."""
    for cand, what in ((explicit, "the ember= argument"), (os.environ.get("EMBER_BINARY"), "EMBER_BINARY")):
        if cand:
            if os.access(cand, os.X_OK) and os.path.isfile(cand):
                return cand
            raise EmberNotFound(f"{what} names {cand!r}, which is not an executable file")
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "ember")
    if os.access(bundled, os.X_OK):
        return bundled
    onpath = shutil.which("ember")
    if onpath:
        return onpath
    raise EmberNotFound("no ember binary: install one on PATH (make install, or the Debian "
                        "package), bundle it in this package, or set EMBER_BINARY")


def _cupti_lib(ember):
    """libember_cupti.so beside the binary, in ../lib, or in /usr/lib/ember; None if none."""
    env = os.environ.get("EMBER_CUPTI_LIB")
    here = os.path.dirname(os.path.realpath(ember))
    for cand in (env, os.path.join(here, "libember_cupti.so"),
                 os.path.join(here, "..", "lib", "libember_cupti.so"),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "libember_cupti.so"),
                 "/usr/lib/ember/libember_cupti.so"):
        if cand and os.path.isfile(cand):
            return os.path.realpath(cand)
    return None


def _can_bpf():
    """Root, or the capabilities BPF sampling needs (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    eff = int(line.split()[1], 16)
                    return bool(eff >> _CAP_SYS_ADMIN & 1) or \
                        bool(eff >> _CAP_BPF & 1 and eff >> _CAP_PERFMON & 1)
    except OSError:
        pass
    return False


def _cuda_initialized():
    torch = sys.modules.get("torch")
    try:
        return bool(torch and torch.cuda.is_initialized())
    except Exception:
        return False


def watch(server=None, profiles=("cpu", "gpu"), labels=None, cuda_graph_trace="node",
          interval=15, *, ember=None, gpu_socket=None, sample_rate=None, extra_args=()):
    """Profiles this process with Ember from now until it exits.

    server: a Pyroscope or Alloy URL (default EMBER_SERVER; none: local files, see --output).
    profiles: any of "cpu", "alloc", "gpu". CPU and allocation profiles need root or
        CAP_BPF + CAP_PERFMON; without them only "gpu" is kept, and watch() says so once.
    labels: {key: value} added to every series (EMBER_TAG_<KEY> works too).
    cuda_graph_trace: "node" (each kernel of a CUDA graph, with the capture-time stack) or
        "graph" (one entry per graph launch).
    interval: seconds per profile.
    Returns the sidecar's subprocess.Popen, or None (the host agent collects, nothing to
    profile, or the sidecar could not start: one warning)."""
    try:
        return _watch(server, profiles, labels, cuda_graph_trace, interval, ember, gpu_socket,
                      sample_rate, extra_args)
    except Exception as e:  # never into the application
        _warn_once("failed", f"profiling not started: {e}")
        return None


def _watch(server, profiles, labels, cuda_graph_trace, interval, ember, gpu_socket, sample_rate,
           extra_args):
    if isinstance(profiles, str):
        profiles = [p for p in profiles.split(",") if p]
    profiles = [p.strip() for p in profiles]
    bad = [p for p in profiles if p not in ("cpu", "alloc", "gpu")]
    if bad:
        raise ValueError(f"unknown profiles {bad} (want cpu, alloc, gpu)")
    if cuda_graph_trace not in ("node", "graph"):
        raise ValueError(f"cuda_graph_trace must be 'node' or 'graph', not {cuda_graph_trace!r}")
    binary = find_ember(ember)
    if not _can_bpf() and any(p in ("cpu", "alloc") for p in profiles):
        _warn_once("nopriv", "CPU and allocation profiles need root or CAP_BPF + CAP_PERFMON: "
                   "profiling GPU work only")
        profiles = [p for p in profiles if p == "gpu"]
    asked = gpu_socket or os.environ.get("EMBER_GPU_SOCKET")
    sock = asked or DEFAULT_GPU_SOCKET
    if "gpu" in profiles:
        lib = _cupti_lib(binary)
        if lib is None:
            _warn_once("nocupti", "no libember_cupti.so beside the ember binary: no GPU profiles")
            profiles = [p for p in profiles if p != "gpu"]
        else:
            if _cuda_initialized():
                _warn_once("latecuda", "CUDA is initialized already: GPU profiles need watch() "
                           "before the first CUDA call")
            host_agent = os.path.exists(sock)
            if not host_agent and not asked and os.geteuid() != 0:
                # No host agent, no root: a socket of our own, for our sidecar only.
                base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
                d = os.path.join(base, f"ember-{os.geteuid()}")
                os.makedirs(d, mode=0o700, exist_ok=True)
                sock = os.path.join(d, f"gpu-{os.getpid()}.sock")
            os.environ["CUDA_INJECTION64_PATH"] = lib
            os.environ["EMBER_GPU_SOCKET"] = sock
            os.environ["EMBER_GPU_GRAPH_TRACE"] = cuda_graph_trace
            if host_agent and profiles == ["gpu"]:
                return None  # a host agent serves the socket: it collects
    if not profiles:
        return None
    argv = [binary, "run", "--pid", str(os.getpid()), "--profiles", ",".join(profiles),
            "--interval", str(interval), "--gpu-socket", sock]
    if server or os.environ.get("EMBER_SERVER"):
        argv += ["--server", server or os.environ["EMBER_SERVER"]]
    if sample_rate:
        argv += ["--sample-rate", str(sample_rate)]
    for k, v in (labels or {}).items():
        argv += ["--label", f"{k}={v}"]
    argv += list(extra_args)
    # Its own session: the terminal's Ctrl-C stops the application, and the sidecar, seeing it
    # exit, still sends the last interval.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    # A sidecar that cannot start says so at once (bad options, no BPF): give it a moment.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _warn_once("exited", f"the sidecar exited at once (status {proc.returncode}); see "
                       f"its message above")
            return None
        time.sleep(0.05)
    _sidecars.append(proc)
    return proc
