"""Shared helpers for the deploy tests: repository paths, a result collector, and small parsers
for the files under deploy/ and grafana/ (compose YAML, Alloy's configuration syntax, Grafana
dashboards). No Docker engine is needed: nothing here starts a container."""

import json
import os
import re
import sys

SKIP = 77


def source_dir(argv_value=None):
    d = argv_value or os.environ.get("EMBER_SOURCE_DIR")
    if not d:
        d = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.path.abspath(d)


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def need_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        skip("python3-yaml is missing (Debian: python3-yaml; `make deps` installs it with docker-compose)")
    import yaml
    return yaml


class Checks:
    """Collects failures so that one run reports every broken rule, then exits 1 if any."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.passed = 0

    def check(self, cond, msg):
        if cond:
            self.passed += 1
        else:
            self.failures.append(msg)
        return cond

    def fail(self, msg):
        self.failures.append(msg)

    def finish(self):
        for f in self.failures:
            print(f"FAIL: {f}")
        print(f"{self.name}: {self.passed} checks passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


# ---- compose ----

def load_compose(yaml, path):
    with open(path) as f:
        return yaml.safe_load(f)


def published_ports(service):
    """Map container port -> host port for a compose service's short-syntax `ports`."""
    out = {}
    for p in service.get("ports", []) or []:
        if isinstance(p, dict):
            out[int(p["target"])] = int(p.get("published", p["target"]))
            continue
        parts = str(p).split("/")[0].split(":")
        if len(parts) == 1:
            out[int(parts[0])] = int(parts[0])
        else:
            out[int(parts[-1])] = int(parts[-2])
    return out


def command_list(service):
    cmd = service.get("command")
    if cmd is None:
        return []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def flag_value(args, flag):
    """Value of `--flag VALUE` or `--flag=VALUE` in an argument list (last one wins)."""
    val = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            val = args[i + 1]
        elif a.startswith(flag + "="):
            val = a[len(flag) + 1:]
    return val


def flag_values(args, flag):
    vals = []
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            vals.append(args[i + 1])
        elif a.startswith(flag + "="):
            vals.append(a[len(flag) + 1:])
    return vals


# ---- Alloy configuration syntax (enough of it for our file) ----

def _strip_comments(text):
    out, i, n = [], 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


_BLOCK = re.compile(r'\s*([A-Za-z_][\w.]*)\s*(?:"([^"]*)")?\s*\{')
_ATTR = re.compile(r'\s*([A-Za-z_]\w*)\s*=\s*')


def _parse_body(text, i):
    """Parse attributes and blocks until the matching '}' (or end). Returns (node, index)."""
    node = {"attrs": {}, "blocks": []}
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            break
        if text[i] == "}":
            return node, i + 1
        m = _ATTR.match(text, i)
        if m and not text.startswith("==", m.end() - 1):
            j, depth, in_str = m.end(), 0, False
            start = j
            while j < n:
                c = text[j]
                if in_str:
                    if c == "\\":
                        j += 2
                        continue
                    if c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c in "[{(":
                    depth += 1
                elif c in "]})":
                    if depth == 0:
                        break
                    depth -= 1
                elif c == "\n" and depth == 0:
                    break
                j += 1
            node["attrs"][m.group(1)] = text[start:j].strip()
            i = j
            continue
        m = _BLOCK.match(text, i)
        if m:
            child, i = _parse_body(text, m.end())
            child["name"], child["label"] = m.group(1), m.group(2)
            node["blocks"].append(child)
            continue
        raise ValueError(f"alloy: cannot parse near: {text[i:i + 60]!r}")
    return node, i


def parse_alloy(path):
    with open(path) as f:
        root, _ = _parse_body(_strip_comments(f.read()), 0)
    return root


def alloy_blocks(node, name):
    return [b for b in node["blocks"] if b["name"] == name]


def alloy_string(expr):
    """The value of a quoted Alloy string literal, with escapes resolved."""
    expr = expr.strip()
    if not (expr.startswith('"') and expr.endswith('"')):
        return None
    return json.loads(expr)


def alloy_strings(expr):
    return [json.loads(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', expr)]


# ---- Grafana dashboards ----

def all_panels(dash):
    """Every panel, including those nested in collapsed rows."""
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []) or [])
    return out


def ds_uid(ds):
    if isinstance(ds, dict):
        return ds.get("uid")
    return ds  # legacy: a name or uid string
