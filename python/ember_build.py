"""ember_build: the PEP 517 backend of the `ember` package, standard library only, so that
`pip install ./python` works offline in a fresh virtual environment (no setuptools or wheel
to fetch). It writes a wheel (and an sdist) of the `ember` package: METADATA, WHEEL and a
RECORD with sha256 digests, as the wheel format (PEP 427) says.

Bundling: `pip install --config-settings bundle=BUILD_DIR ./python` (or EMBER_BUNDLE=BUILD_DIR
in the environment) puts Ember's build outputs into the wheel: BUILD_DIR/ember and
libember_alloc.so as ember/bin/, libember_cupti.so as ember/lib/ (where ember.find_ember()
looks first). A bundled binary, or one already in ember/bin, makes the wheel linux_x86_64
instead of pure Python. A bundle directory without an `ember` binary is an error."""
import base64
import hashlib
import os
import tarfile
import zipfile

NAME = "ember_profiler"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
METADATA = f"""Metadata-Version: 2.1
Name: ember-profiler
Version: {VERSION}
Summary: Ember, the continuous profiler, started from Python: ember.watch() and python -m ember
Requires-Python: >=3.10
License: GPL-2.0-only
"""


def _files():
    """(path on disk, path in the wheel) of the package, sorted."""
    out = []
    root = os.path.join(HERE, "ember")
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for n in sorted(names):
            if n.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(d, n)
            out.append((full, os.path.relpath(full, HERE)))
    return out


def _bundle(config_settings):
    """(path on disk, path in the wheel, mode) of the build outputs to bundle, or []."""
    src = (config_settings or {}).get("bundle") or os.environ.get("EMBER_BUNDLE")
    if not src:
        return []
    src = os.path.abspath(os.path.expanduser(src))
    exe = os.path.join(src, "ember")
    if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        raise RuntimeError(f"bundle={src}: no executable 'ember' there (build Ember first: "
                           f"make build)")
    out = [(exe, "ember/bin/ember", 0o755)]
    for lib, arc in (("libember_alloc.so", "ember/bin/libember_alloc.so"),
                     ("libember_cupti.so", "ember/lib/libember_cupti.so")):
        if os.path.isfile(os.path.join(src, lib)):
            out.append((os.path.join(src, lib), arc, 0o755))
    return out


def _tag(bundle=()):
    bundled = os.path.join(HERE, "ember", "bin", "ember")
    return "py3-none-linux_x86_64" if bundle or os.path.exists(bundled) else "py3-none-any"


def _digest(data):
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={h},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    bundle = _bundle(config_settings)
    tag = _tag(bundle)
    name = f"{NAME}-{VERSION}-{tag}.whl"
    info = f"{NAME}-{VERSION}.dist-info"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        def put(arc, data, mode=0o644):
            zi = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            record.append(f"{arc},{_digest(data)}")

        names = set()
        for full, arc, mode in bundle:
            with open(full, "rb") as f:
                put(arc, f.read(), mode)
            names.add(arc)
        for full, arc in _files():
            if arc in names:
                continue
            with open(full, "rb") as f:
                put(arc, f.read(), os.stat(full).st_mode & 0o777)
        put(f"{info}/METADATA", METADATA.encode())
        put(f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: ember_build\nRoot-Is-Purelib: "
                              f"{'true' if tag.endswith('any') else 'false'}\nTag: {tag}\n").encode())
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ("pyproject.toml", "README.md", "ember_build.py"):
            t.add(os.path.join(HERE, rel), f"{base}/{rel}")
        for full, arc in _files():
            t.add(full, f"{base}/{arc}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = METADATA.encode()
        info.size = len(data)
        import io
        t.addfile(info, io.BytesIO(data))
    return name
