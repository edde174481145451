"""The Python package: `pip install ./python` into a fresh virtual environment, offline (no
index; the package's build backend is its own, standard library only), then from that
environment:
- `python -m ember run --server URL ... pysplit.py 6`: the receiver gets process_cpu series
  for the interpreter (service_name python3.11, the --label given), whose merged profile has
  the fixture's three functions under their callers down to <module> and its split ±5 points;
- `python -m ember run -m MODULE`: the module runs as __main__ and is profiled;
- ember.watch() returns the sidecar's Popen; with a bad argument it warns and returns None,
  never raising into the application;
- `python -m ember version` runs the binary.
Uses Debian's python3.11 (its venv has pip and setuptools)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from agenttest import Checker, Receiver, require_root_bpf, skip, truth_split

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import embertest as et  # noqa: E402
import pyfixture as pf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
require_root_bpf()
if pf.probe(pf.DEBIAN_PYTHON) is None:
    skip(f"needs Debian's {pf.DEBIAN_PYTHON}")
c = Checker("python_package")
version = pf.probe(pf.DEBIAN_PYTHON)
host = socket.gethostname()


def series_of(rcv, service):
    return [s for s in rcv.series() if s["labels"].get("__name__") == "process_cpu" and
            s["labels"].get("service_name") == service]


with tempfile.TemporaryDirectory() as tmp:
    venv = os.path.join(tmp, "venv")
    r = subprocess.run([pf.DEBIAN_PYTHON, "-m", "venv", venv], capture_output=True, text=True)
    c.check(r.returncode == 0, f"python3.11 -m venv: {r.stderr.strip()[-300:]}")
    vpy = os.path.join(venv, "bin", "python")
    src = os.path.join(tmp, "src")
    shutil.copytree(os.path.join(ROOT, "python"), src)  # a clean tree: no build/ left behind
    r = subprocess.run([vpy, "-m", "pip", "install", "--no-index", src],
                       capture_output=True, text=True, timeout=300)
    c.check(r.returncode == 0, f"pip install --no-index ./python (offline): "
            f"{(r.stdout + r.stderr).strip()[-400:]}")
    env = dict(os.environ, EMBER_BINARY=et.EMBER, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([vpy, "-c", "import ember, os; print(os.path.dirname(ember.__file__))"],
                       capture_output=True, text=True, env=env, cwd=tmp)
    c.check(r.returncode == 0 and r.stdout.strip().startswith(venv),
            f"the package imports from the environment: {r.stdout.strip()} {r.stderr.strip()[-200:]}")
    r = subprocess.run([vpy, "-m", "ember", "version"], capture_output=True, text=True, env=env, cwd=tmp)
    c.check(r.returncode == 0 and "ember" in r.stdout.lower(),
            f"python -m ember version runs the binary: {r.stdout.strip()} {r.stderr.strip()[-200:]}")
    noember = dict(env, PATH="/usr/bin:/bin", EMBER_BINARY="")
    r = subprocess.run([vpy, "-m", "ember", "version"], capture_output=True, text=True,
                       env=noember, cwd=tmp)
    c.check(r.returncode == 2 and "no ember binary" in r.stderr,
            f"without a binary: a clear error, exit 2: {r.returncode} {r.stderr.strip()[-200:]}")

    # A wheel with the binary bundled: found in the package itself, nothing on PATH.
    venv2 = os.path.join(tmp, "venv2")
    subprocess.run([pf.DEBIAN_PYTHON, "-m", "venv", venv2], capture_output=True, text=True)
    vpy2 = os.path.join(venv2, "bin", "python")
    r = subprocess.run([vpy2, "-m", "pip", "install", "--no-index", "--config-settings",
                        f"bundle={et.BUILD}", src], capture_output=True, text=True, timeout=300)
    c.check(r.returncode == 0, f"pip install --config-settings bundle=BUILD ./python: "
            f"{(r.stdout + r.stderr).strip()[-400:]}")
    bare = dict(os.environ, PATH="/usr/bin:/bin", EMBER_BINARY="", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([vpy2, "-c", "import ember; print(ember.find_ember()); "
                        "print(ember._cupti_lib(ember.find_ember()))"],
                       capture_output=True, text=True, env=bare, cwd=tmp)
    found = r.stdout.split()
    c.check(r.returncode == 0 and len(found) == 2 and all(x.startswith(venv2) for x in found),
            f"the bundled binary and libember_cupti.so are found in the package: {r.stdout.strip()} "
            f"{r.stderr.strip()[-200:]}")
    r = subprocess.run([vpy2, "-m", "ember", "version"], capture_output=True, text=True, env=bare,
                       cwd=tmp)
    c.check(r.returncode == 0 and "ember" in r.stdout.lower(),
            f"python -m ember version runs the bundled binary: {r.stdout.strip()} "
            f"{r.stderr.strip()[-200:]}")
    r = subprocess.run([vpy2, "-m", "pip", "install", "--no-index", "--force-reinstall",
                        "--config-settings", f"bundle={tmp}", src],
                       capture_output=True, text=True, timeout=300)
    c.check(r.returncode != 0 and "no executable 'ember'" in r.stdout + r.stderr,
            f"a bundle directory without the binary is a clear error: "
            f"{(r.stdout + r.stderr).strip()[-300:]}")

    # python -m ember run script.py
    rcv = Receiver(tmp)
    try:
        fx = subprocess.run([vpy, "-m", "ember", "run", "--server", rcv.url, "--profiles", "cpu",
                             "--interval", "2", "--sample-rate", pf.SAMPLE_RATE, "--label",
                             "app=pym", pf.PYSPLIT, "6"],
                            capture_output=True, text=True, env=env, cwd=tmp, timeout=90)
        c.check(fx.returncode == 0, f"python -m ember run pysplit.py exit {fx.returncode}: "
                f"{fx.stderr.strip()[-300:]}")
        time.sleep(3)  # the sidecar sees the exit and sends the last interval
        series = series_of(rcv, "python3.11")
        c.check(len(series) >= 2, f"process_cpu series for service python3.11 ({len(series)})")
        if series:
            labels = series[0]["labels"]
            c.check(labels.get("app") == "pym", f"--label app=pym: {labels.get('app')}")
            c.check(labels.get("hostname") == host, f"hostname {labels.get('hostname')}")
            j = pf.Judge(c, "python -m ember run", pf.merge([s["profile"] for s in series]),
                         version, pf.Layout(pf.PYSPLIT))
            j.launched = True  # runpy's frames sit below the script's <module>
            j.frames_printed()
            shares = j.shares()
            et.check_split(c, "python -m ember run", shares, truth_split(fx.stdout, pf.SPLIT),
                           pf.SPLIT, pf.DESIGN)
            for q in pf.SPLIT:
                j.check_function(q)
    finally:
        rcv.stop()

    # python -m ember run -m module, and watch() itself
    mod_dir = os.path.join(tmp, "mods")
    os.mkdir(mod_dir)
    with open(os.path.join(mod_dir, "burnmod.py"), "w") as f:
        f.write("import sys, time\n"
                "def burn_in_module(secs):\n"
                "    end = time.time() + secs\n"
                "    while time.time() < end:\n"
                "        sum(i * i for i in range(1000))\n"
                "if __name__ == '__main__':\n"
                "    burn_in_module(float(sys.argv[1]))\n"
                "    print('ran as main', sys.argv)\n")
    with open(os.path.join(mod_dir, "watcher.py"), "w") as f:
        f.write("import subprocess, sys, warnings, ember, burnmod\n"
                "warnings.simplefilter('always')\n"
                "with warnings.catch_warnings(record=True) as w:\n"
                "    none = ember.watch(profiles=('cpu', 'nonsense'))\n"
                "print('bad-profiles', none is None, len(w), str(w[0].message) if w else '')\n"
                "p = ember.watch(server=sys.argv[1], profiles=('cpu',), interval=2, sample_rate=499)\n"
                "print('popen', isinstance(p, subprocess.Popen))\n"
                "burnmod.burn_in_module(3)\n")
    rcv = Receiver(tmp)
    try:
        envm = dict(env, PYTHONPATH=mod_dir)
        fx = subprocess.run([vpy, "-m", "ember", "run", "--server", rcv.url, "--profiles", "cpu",
                             "--interval", "2", "--sample-rate", pf.SAMPLE_RATE, "-m", "burnmod",
                             "3"], capture_output=True, text=True, env=envm, cwd=tmp, timeout=60)
        c.check(fx.returncode == 0 and "ran as main" in fx.stdout and "burnmod.py', '3']" in fx.stdout,
                f"-m burnmod ran as __main__ with its arguments: {fx.stdout.strip()[-200:]} "
                f"{fx.stderr.strip()[-200:]}")
        wt = subprocess.run([vpy, os.path.join(mod_dir, "watcher.py"), rcv.url], capture_output=True,
                            text=True, env=envm, cwd=tmp, timeout=60)
        c.check("bad-profiles True 1" in wt.stdout and "unknown profiles" in wt.stdout,
                f"watch() with a bad profile: one warning, None, no exception: "
                f"{wt.stdout.strip()[-300:]} {wt.stderr.strip()[-300:]}")
        c.check("popen True" in wt.stdout, f"watch() returns the sidecar's Popen: {wt.stdout.strip()[-200:]}")
        time.sleep(3)
        burns = [s for s in series_of(rcv, "python3.11")
                 if any("burn_in_module" in smp["stack"] for smp in s["profile"]["samples"])]
        c.check(len(burns) >= 2, f"burn_in_module profiled from -m and from watch() ({len(burns)} series)")
    finally:
        rcv.stop()

    # An ordinary user: watch() keeps GPU profiles only (one warning), starts a sidecar that
    # needs no BPF on a socket of its own, and the GPU work of its children arrives.
    pub = os.path.join(tmp, "pub")
    os.mkdir(pub)
    shutil.copytree(os.path.join(ROOT, "python", "ember"), os.path.join(pub, "ember"))
    shutil.copy(os.path.join(et.FIXTURES, "gpu_client"), pub)
    shutil.copy(os.path.join(et.FIXTURES, "libpycap_harness.so"), pub)
    fake_cupti = os.path.join(pub, "libember_cupti.so")  # CUDA never loads it here: no GPU
    open(fake_cupti, "w").close()
    outdir = os.path.join(pub, "out")
    with open(os.path.join(pub, "gpuwatch.py"), "w") as f:
        f.write("import os, subprocess, sys, warnings, ember\n"
                "with warnings.catch_warnings(record=True) as w:\n"
                "    warnings.simplefilter('always')\n"
                f"    p = ember.watch(profiles=('cpu', 'gpu'), interval=2, extra_args=['--output', {outdir!r}])\n"
                "print('popen', isinstance(p, subprocess.Popen), 'warnings', [str(x.message) for x in w])\n"
                "print('socket', os.environ.get('EMBER_GPU_SOCKET'), os.environ.get('CUDA_INJECTION64_PATH'))\n"
                "r = subprocess.run([os.path.join(os.path.dirname(__file__), 'gpu_client'),\n"
                "                    os.environ['EMBER_GPU_SOCKET'], '3'], capture_output=True, text=True)\n"
                "print('client', r.returncode, r.stderr.strip())\n"
                # A launch through libember_cupti.so's launch path, with the Python frames read
                # in process; the process lives on so that the sidecar reads its code objects.
                "import ctypes, time\n"
                "lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), 'libpycap_harness.so'))\n"
                "lib.ember_gpu_harness_launch.argtypes = [ctypes.c_char_p, ctypes.c_uint64]\n"
                "def unprivileged_forward():\n"
                "    return lib.ember_gpu_harness_launch(b'py_kernel', 5000)\n"
                "opened = lib.ember_gpu_harness_open(os.environ['EMBER_GPU_SOCKET'].encode())\n"
                "print('python launch', opened, unprivileged_forward(), lib.ember_gpu_harness_flush(), flush=True)\n"
                "time.sleep(4)\n")
    for d, _, names in os.walk(tmp):
        os.chmod(d, 0o755)
        for n in names:
            os.chmod(os.path.join(d, n), 0o755)
    os.mkdir(outdir)
    os.chown(outdir, 65534, 65534)
    uenv = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pub, "EMBER_BINARY": et.EMBER,
            "EMBER_CUPTI_LIB": fake_cupti, "HOME": pub, "PYTHONDONTWRITEBYTECODE": "1"}
    u = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        pf.DEBIAN_PYTHON, os.path.join(pub, "gpuwatch.py")],
                       capture_output=True, text=True, env=uenv, cwd=pub, timeout=60)
    c.check("popen True" in u.stdout, f"unprivileged watch() starts its sidecar: {u.stdout.strip()[-400:]} "
            f"{u.stderr.strip()[-400:]}")
    c.check("need root or CAP_BPF" in u.stdout and u.stdout.count("need root") == 1,
            "unprivileged: one warning that CPU profiles need privileges")
    c.check(f"socket /tmp/ember-65534/" in u.stdout or "ember-65534" in u.stdout,
            f"unprivileged: a GPU socket of its own ({[l for l in u.stdout.splitlines() if l.startswith('socket')]})")
    c.check("client 0" in u.stdout, "the client sent its GPU batch to the sidecar")
    gpu_files = []
    for _ in range(50):
        gpu_files = [os.path.join(d, n) for d, _, ns in os.walk(outdir) for n in ns
                     if n.startswith("gpu-") and n.endswith(".pb.gz")]
        if gpu_files:
            time.sleep(0.5)
            break
        time.sleep(0.2)
    c.check(bool(gpu_files), f"the unprivileged sidecar wrote GPU profiles ({gpu_files})")
    kernels = 0
    for g in gpu_files:
        gp = et.decode(g)
        if gp["sample_types"][0] == ["gpu_time", "nanoseconds"]:
            kernels += sum(1 for smp in gp["samples"] if smp["stack"][0].startswith("[cuda kernel] square"))
    c.check(kernels >= 1, f"its GPU profile has the client's kernel as a leaf ({kernels} stacks)")
    c.check("python launch 0" in u.stdout and " 0\n" in u.stdout.split("python launch", 1)[-1],
            f"a launch with Python frames went to the sidecar ({u.stdout.strip()[-200:]})")
    py_stacks = []
    for g in gpu_files:
        gp = et.decode(g)
        for smp in gp["samples"]:
            if smp["stack"][0] == "[cuda kernel] py_kernel":
                py_stacks.append([(f["name"], os.path.basename(f.get("file") or ""))
                                  for f in pf.frames(smp)])
    c.check(any(("unprivileged_forward", "gpuwatch.py") in st and ("<module>", "gpuwatch.py") in st
                for st in py_stacks),
            f"unprivileged: the kernel sits under the Python function that launched it, resolved "
            f"by the sidecar ({py_stacks[:1]})")
c.done()
