#!/usr/bin/python3
"""deploy.kubernetes: deploy/kubernetes renders with kubectl's built-in kustomize, offline, and
the objects it renders keep the rules deploy/README.md ("Kubernetes") promises:

- the DaemonSet: privileged, hostPID, the host mounts of the compose file's agent service (the
  mapping is in daemonset.yaml's header and in COMPOSE_NAMED_VOLUMES / NOT_ON_KUBERNETES below),
  NODE_NAME from the downward API (spec.nodeName), CPU and memory requests and limits, a
  toleration of every taint, the ServiceAccount that the binding names, the image of the compose
  agent, and a command line of `ember agent` whose every flag `ember help agent` lists;
- RBAC: one ClusterRole whose rules are exactly get/list/watch on pods in the core API group,
  bound to that ServiceAccount in the namespace it lives in, and no other role or binding;
- the configuration: a ConfigMap holding ember.conf, mounted where --config points; every line
  `option = value`, every option one that `ember help agent` lists (and a file may set), every
  profile family one that `ember help profiles` prints, the metrics port declared.

Options come from the built binary, never from a list kept here, so the flags being added
(--docker-socket, --kube-api, ...) count exactly when the binary lists them.

kubectl is required: without it the test fails (it does not skip). `make deps` installs Debian's
kubernetes-client, whose kubectl has kustomize built in. The rendered YAML is turned into JSON by
kubectl as well (`kubectl label --local -o json`, which needs no cluster), so no YAML parser is
needed here. The checkers are also run on broken copies of the objects, and must reject each.

usage: test_kubernetes.py [--source-dir DIR] [--ember PATH] [--kubectl PATH]"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as dl  # noqa: E402

# The compose agent's named volumes, and the host directory the DaemonSet uses instead.
COMPOSE_NAMED_VOLUMES = {"ember-run": "/run/ember"}
# Compose agent mounts the DaemonSet leaves out on purpose, and why.
NOT_ON_KUBERNETES = {
    "/var/run/docker.sock": "nodes run containerd or CRI-O and pods are named through the "
                            "Kubernetes API; daemonset.yaml shows the optional mount (type Socket)",
}
# hostPath types for the paths that may be missing on a node: created, not required.
HOSTPATH_TYPES = {"/run/ember": "DirectoryOrCreate"}
# An option `ember help agent` lists that a config file may not set.
FLAG_ONLY = {"config"}
CORE_RBAC = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
LABEL_PROBE = "ember.test/absent"  # removed by `kubectl label --local`: a label nobody sets


# ---- the tools ----

def find_kubectl(arg):
    for cand in (arg, shutil.which("kubectl"), "/usr/bin/kubectl"):
        if cand and os.access(cand, os.X_OK):
            return cand
    print("FAIL: kubectl not found. deploy.kubernetes needs it to render deploy/kubernetes with its "
          "built-in kustomize; install Debian's kubernetes-client (`make deps` does) or pass --kubectl")
    sys.exit(1)


def kubectl_env(tmp):
    """No cluster, no user config: an empty kubeconfig and a private HOME (cache, plugins)."""
    env = dict(os.environ)
    kubeconfig = os.path.join(tmp, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    env.update(KUBECONFIG=kubeconfig, HOME=tmp)
    return env


def json_stream(text):
    """The JSON values in `text`, one after another (kubectl prints one object per input
    document; an older one may print a List)."""
    out, dec, i = [], json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])


def render(kubectl, src, env):
    """kubectl kustomize deploy/kubernetes, as JSON objects. Returns (objects, yaml, error)."""
    r = subprocess.run([kubectl, "kustomize", os.path.join(src, "deploy", "kubernetes")],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        return None, None, f"`kubectl kustomize deploy/kubernetes` failed (exit {r.returncode}):\n{r.stderr.strip()}"
    warn = r.stderr.strip()
    rendered = r.stdout
    # `label --local` parses the YAML into objects and prints them back without a server;
    # removing a label nobody sets changes nothing but an absent labels map (added empty).
    r = subprocess.run([kubectl, "label", "--local", "-f", "-", "-o", "json", LABEL_PROBE + "-"],
                       input=rendered, capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        return None, rendered, f"`kubectl label --local -o json` could not read the rendered YAML:\n{r.stderr.strip()}"
    try:
        objs = json_stream(r.stdout)
    except ValueError as e:
        return None, rendered, f"kubectl's JSON does not decode: {e}"
    return objs, rendered, (f"kustomize warned: {warn}" if warn else None)


def ember_help(ember, topic):
    try:
        r = subprocess.run([ember, "help", topic], capture_output=True, text=True, timeout=30)
    except OSError as e:
        print(f"FAIL: cannot run {ember} (build it, or set EMBER_BUILD_DIR / --ember): {e}")
        sys.exit(1)
    if r.returncode != 0:
        print(f"FAIL: `{ember} help {topic}` exited {r.returncode}: {r.stderr.strip()}")
        sys.exit(1)
    return r.stdout + r.stderr


# An option line of `ember help agent`: two to eight spaces, an optional short flag, the long one.
# Continuation lines of a description are indented further and are not options.
_OPT_LINE = re.compile(r"^ {2,8}(?:-[A-Za-z], )?--([a-z][a-z0-9-]*)\b")


def agent_options(ember):
    opts = {m.group(1) for line in ember_help(ember, "agent").splitlines() if (m := _OPT_LINE.match(line))}
    if not {"server", "config", "metrics-addr"} <= opts:
        print(f"FAIL: `ember help agent` lists no --server/--config/--metrics-addr: {sorted(opts)}")
        sys.exit(1)
    return opts


def profile_families(ember):
    fams = set()
    for line in ember_help(ember, "profiles").splitlines():
        if "\t" in line:
            fams.add(line.split("\t", 1)[1].strip())
    if not fams:
        print("FAIL: `ember help profiles` printed no families")
        sys.exit(1)
    return fams


# ---- the compose agent's mounts (the file is ours: a strict scan of one service's list) ----

def compose_agent(path, service="ember"):
    """The volumes (source, target, read_only) and image of one compose service, read by
    indentation: `  NAME:` under services, its `    volumes:` and `    image:` keys."""
    with open(path) as f:
        lines = f.read().splitlines()
    vols, image, in_svc, in_vols = [], None, False, False
    for line in lines:
        body = line.split(" #", 1)[0].rstrip()
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        indent = len(body) - len(body.lstrip())
        if indent == 2 and body.strip().endswith(":"):
            in_svc, in_vols = body.strip() == service + ":", False
            continue
        if indent < 2:
            in_svc = in_vols = False
            continue
        if not in_svc:
            continue
        if indent == 4:
            key, _, val = body.strip().partition(":")
            in_vols = key == "volumes" and not val.strip()
            if key == "image":
                image = val.strip().strip("\"'")
            continue
        if in_vols and indent == 6 and body.strip().startswith("- "):
            parts = body.strip()[2:].strip().strip("\"'").split(":")
            if len(parts) < 2:
                raise ValueError(f"{path}: cannot read the volume {body.strip()!r}")
            vols.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    if not vols:
        raise ValueError(f"{path}: no volumes found for the {service} service")
    return vols, image


# ---- helpers over the rendered objects ----

def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def name_of(o):
    return (o.get("metadata") or {}).get("name")


def quantity(q, memory):
    """A Kubernetes quantity as a number (cores, or bytes)."""
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2)
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}.get(unit)
    if scale is None or (memory and unit == "m"):
        return None
    return n * scale


def read_conf(text):
    """ember.conf: {option: [values]} and the lines that are not `option = value`."""
    conf, bad = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        key, eq, val = s.partition("=")
        if not eq or not key.strip() or " #" in val:
            bad.append(f"line {n}: not `option = value` (no trailing comments): {s!r}")
            continue
        conf.setdefault(key.strip(), []).append(val.strip())
    return conf, bad


def argv_flags(argv):
    """The long flags (`--name` or `--name=value`) of an argument list, without dashes."""
    return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--") and len(a) > 2]


# ---- the rules (functions of the objects, so that broken copies can be fed to them) ----

def rbac_errors(objs):
    errors = []
    roles = by_kind(objs, "ClusterRole")
    if by_kind(objs, "Role") or by_kind(objs, "RoleBinding"):
        errors.append("rbac: a namespaced Role or RoleBinding is rendered; only one ClusterRole is expected")
    if len(roles) != 1:
        return errors + [f"rbac: want exactly one ClusterRole, found {[name_of(r) for r in roles]}"]
    role = roles[0]
    if role.get("aggregationRule"):
        errors.append("rbac: the ClusterRole aggregates other roles")
    rules = role.get("rules") or []
    norm = [{k: (sorted(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rules]
    if norm != [CORE_RBAC]:
        errors.append(f"rbac: ClusterRole {name_of(role)} rules are {rules}; want exactly "
                      "get/list/watch on pods in the core group (\"\")")
    sas = by_kind(objs, "ServiceAccount")
    binds = by_kind(objs, "ClusterRoleBinding")
    if len(sas) != 1:
        return errors + [f"rbac: want one ServiceAccount, found {[name_of(s) for s in sas]}"]
    if len(binds) != 1:
        return errors + [f"rbac: want one ClusterRoleBinding, found {[name_of(b) for b in binds]}"]
    sa, bind = sas[0], binds[0]
    ref = bind.get("roleRef") or {}
    if ref != {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name_of(role)}:
        errors.append(f"rbac: the binding's roleRef {ref} is not ClusterRole {name_of(role)}")
    want = [{"kind": "ServiceAccount", "name": name_of(sa), "namespace": sa["metadata"].get("namespace")}]
    if bind.get("subjects") != want:
        errors.append(f"rbac: the binding's subjects {bind.get('subjects')} are not {want}")
    if sa.get("automountServiceAccountToken") is False:
        errors.append("rbac: the ServiceAccount does not mount its token; the agent could not reach the API")
    return errors


def daemonset_errors(objs, compose_vols, compose_image, options):
    """The DaemonSet's rules. Returns (errors, the agent container or None)."""
    errors = []
    dss = by_kind(objs, "DaemonSet")
    if len(dss) != 1:
        return [f"daemonset: want one DaemonSet, found {[name_of(d) for d in dss]}"], None
    ds = dss[0]
    pod = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    where = f"DaemonSet {name_of(ds)}"
    containers = pod.get("containers") or []
    if len(containers) != 1:
        return [f"{where}: want one container, found {[c.get('name') for c in containers]}"], None
    ctr = containers[0]

    if pod.get("hostPID") is not True:
        errors.append(f"{where}: hostPID is not true (the agent must see every process of the node)")
    if (ctr.get("securityContext") or {}).get("privileged") is not True:
        errors.append(f"{where}: the container is not privileged")
    if ctr.get("image") != compose_image:
        errors.append(f"{where}: image {ctr.get('image')!r} is not the compose agent's {compose_image!r}")
    if pod.get("hostNetwork") and pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
        errors.append(f"{where}: hostNetwork without dnsPolicy ClusterFirstWithHostNet: cluster "
                      "service names (the server URL) would not resolve")

    # NODE_NAME from the downward API.
    env = {e.get("name"): e for e in ctr.get("env") or []}
    ref = ((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef") or {}
    if ref.get("fieldPath") != "spec.nodeName" or "value" in (env.get("NODE_NAME") or {}):
        errors.append(f"{where}: NODE_NAME is not taken from fieldRef spec.nodeName: {env.get('NODE_NAME')}")

    # Requests and limits, both CPU and memory, requests within limits.
    res = ctr.get("resources") or {}
    for kind in ("cpu", "memory"):
        req = quantity((res.get("requests") or {}).get(kind, ""), kind == "memory")
        lim = quantity((res.get("limits") or {}).get(kind, ""), kind == "memory")
        if req is None or lim is None:
            errors.append(f"{where}: {kind} request or limit missing or malformed: {res}")
        elif not 0 < req <= lim:
            errors.append(f"{where}: {kind} request {req} exceeds its limit {lim}")

    # A toleration of every taint: operator Exists, no key, no effect.
    if not any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
               for t in pod.get("tolerations") or []):
        errors.append(f"{where}: no toleration {{operator: Exists}} (it would skip tainted nodes): "
                      f"{pod.get('tolerations')}")

    # The ServiceAccount the binding names.
    sas = [name_of(s) for s in by_kind(objs, "ServiceAccount")]
    if pod.get("serviceAccountName") not in sas or len(sas) != 1:
        errors.append(f"{where}: serviceAccountName {pod.get('serviceAccountName')!r} is not the "
                      f"ServiceAccount {sas}")
    if pod.get("automountServiceAccountToken") is False:
        errors.append(f"{where}: automountServiceAccountToken is false; the agent could not reach the API")

    # The command line: ember agent, flags that `ember help agent` lists.
    argv = list(ctr.get("command") or []) + list(ctr.get("args") or [])
    if not argv or os.path.basename(argv[0]) != "ember" or argv[1:2] != ["agent"]:
        errors.append(f"{where}: the command line is not `ember agent ...`: {argv}")
    for flag in argv_flags(argv):
        if flag not in options:
            errors.append(f"{where}: --{flag} is not an option of `ember help agent`")
    if "--" in argv:
        errors.append(f"{where}: the agent takes no command after --: {argv}")

    # Host mounts: the compose agent's, at the same paths, read-only where compose has :ro.
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = {m.get("mountPath"): m for m in ctr.get("volumeMounts") or []}
    for source, target, ro in compose_vols:
        if target in NOT_ON_KUBERNETES:
            continue
        host = source if source.startswith("/") else COMPOSE_NAMED_VOLUMES.get(source)
        if host is None:
            errors.append(f"compose mounts the volume {source!r} at {target}; map it in "
                          "COMPOSE_NAMED_VOLUMES (a host directory) or NOT_ON_KUBERNETES (why not)")
            continue
        m = mounts.get(target)
        hp = (volumes.get((m or {}).get("name")) or {}).get("hostPath") if m else None
        if not hp:
            errors.append(f"{where}: {target} (compose: {source}) is not a hostPath mount")
            continue
        if hp.get("path") != host:
            errors.append(f"{where}: {target} comes from hostPath {hp.get('path')}, want {host}")
        if bool(m.get("readOnly")) != ro:
            errors.append(f"{where}: {target} readOnly is {bool(m.get('readOnly'))}; compose has "
                          f"{'ro' if ro else 'rw'}")
        want_type = HOSTPATH_TYPES.get(host, "Directory")
        if hp.get("type") != want_type:
            errors.append(f"{where}: hostPath {host} has type {hp.get('type')!r}, want {want_type!r}")
    for v in volumes.values():
        hp = v.get("hostPath")
        if hp and hp.get("path", "").endswith(".sock") and hp.get("type") != "Socket":
            errors.append(f"{where}: hostPath {hp['path']} without type Socket (an untyped one "
                          "creates a directory where the socket is missing)")
    return errors, ctr


def config_errors(objs, ctr, options, families):
    """The ConfigMap and ember.conf. Returns (errors, conf)."""
    errors = []
    if ctr is None:
        return ["config: no agent container to check the configuration of"], {}
    argv = list(ctr.get("command") or []) + list(ctr.get("args") or [])
    conf_path = dl.flag_value(argv, "--config")
    if not conf_path:
        return [f"config: the agent is not given --config: {argv}"], {}
    ds = by_kind(objs, "DaemonSet")[0]
    pod = ds["spec"]["template"]["spec"]
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    found = None
    for m in ctr.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        if conf_path.startswith(mp + "/"):
            found = (m, volumes.get(m.get("name")) or {}, conf_path[len(mp) + 1:])
    if not found or "configMap" not in found[1]:
        return [f"config: --config {conf_path} is not in a mounted ConfigMap"], {}
    mount, vol, key = found
    if mount.get("subPath"):
        errors.append("config: the ConfigMap is mounted with subPath, which never sees updates")
    cm_name = vol["configMap"].get("name")
    cms = [c for c in by_kind(objs, "ConfigMap") if name_of(c) == cm_name]
    if not cms:
        return errors + [f"config: the DaemonSet mounts ConfigMap {cm_name!r}, which is not rendered"], {}
    cm = cms[0]
    if cm["metadata"].get("namespace") != ds["metadata"].get("namespace"):
        errors.append(f"config: ConfigMap {cm_name} is not in the DaemonSet's namespace")
    items = vol["configMap"].get("items")
    if items:
        key = next((i["key"] for i in items if i.get("path") == key), None)
    text = (cm.get("data") or {}).get(key)
    if key != "ember.conf" or text is None:
        return errors + [f"config: --config {conf_path} is not the key ember.conf of ConfigMap {cm_name}"], {}
    conf, bad = read_conf(text)
    errors += [f"ember.conf: {b}" for b in bad]
    for opt in conf:
        if opt not in options:
            errors.append(f"ember.conf: option {opt!r} is not in `ember help agent`")
        elif opt in FLAG_ONLY:
            errors.append(f"ember.conf: option {opt!r} is taken only on the command line")
    for fam in ",".join(conf.get("profiles", [])).split(","):
        if fam and fam not in families:
            errors.append(f"ember.conf: profile family {fam!r} is not one of `ember help profiles` ({sorted(families)})")

    server = (conf.get("server") or [None])[-1]
    u = urllib.parse.urlsplit(server or "")
    if u.scheme not in ("http", "https") or not u.hostname or ".svc" not in u.hostname:
        errors.append(f"ember.conf: server {server!r} is not an in-cluster service URL (NAME.NAMESPACE.svc...)")
    # The metrics port, when served, is declared on the container and reachable from outside.
    addr = (conf.get("metrics-addr") or [None])[-1]
    ports = {p.get("containerPort"): p for p in ctr.get("ports") or []}
    if addr:
        host, _, port = addr.rpartition(":")
        if not port.isdigit() or int(port) not in ports:
            errors.append(f"ember.conf: metrics-addr {addr} is not a containerPort of the agent ({sorted(ports)})")
        elif ports[int(port)].get("name") != "metrics":
            errors.append(f"the agent's port {port} is not named `metrics`")
        if host not in ("0.0.0.0", "[::]", "::"):
            errors.append(f"ember.conf: metrics-addr {addr} listens on {host or '127.0.0.1'} only; "
                          "Prometheus could not scrape it")
    return errors, conf


def namespace_errors(objs):
    errors = []
    nss = by_kind(objs, "Namespace")
    if len(nss) != 1:
        return [f"want one Namespace, found {[name_of(n) for n in nss]}"]
    ns = name_of(nss[0])
    for o in objs:
        if o.get("kind") in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            if o["metadata"].get("namespace"):
                errors.append(f"{o['kind']} {name_of(o)} is cluster-scoped but has a namespace")
        elif o["metadata"].get("namespace") != ns:
            errors.append(f"{o['kind']} {name_of(o)} is in namespace {o['metadata'].get('namespace')!r}, not {ns!r}")
    enforce = (nss[0]["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    if enforce not in (None, "privileged"):
        errors.append(f"Namespace {ns}: pod-security enforce={enforce} refuses the privileged agent")
    return errors


def all_errors(objs, compose_vols, compose_image, options, families):
    errors = namespace_errors(objs) + rbac_errors(objs)
    ds_errs, ctr = daemonset_errors(objs, compose_vols, compose_image, options)
    cfg_errs, _ = config_errors(objs, ctr, options, families)
    return errors + ds_errs + cfg_errs


# ---- broken copies ----

def mutate(objs, kind, fn):
    m = copy.deepcopy(objs)
    fn(next(o for o in m if o.get("kind") == kind))
    return m


def agent_ctr(ds):
    return ds["spec"]["template"]["spec"]["containers"][0]


def set_conf(objs, text):
    m = copy.deepcopy(objs)
    for cm in by_kind(m, "ConfigMap"):
        if "ember.conf" in (cm.get("data") or {}):
            cm["data"]["ember.conf"] += text
    return m


def mutants(objs):
    def drop_env(ds):
        agent_ctr(ds)["env"] = [e for e in agent_ctr(ds).get("env", []) if e.get("name") != "NODE_NAME"]

    def drop_mount(path):
        def fn(ds):
            agent_ctr(ds)["volumeMounts"] = [m for m in agent_ctr(ds)["volumeMounts"] if m["mountPath"] != path]
        return fn

    def writable(path):
        def fn(ds):
            for m in agent_ctr(ds)["volumeMounts"]:
                if m["mountPath"] == path:
                    m.pop("readOnly", None)
        return fn

    return [
        ("a ClusterRole that may also create pods",
         mutate(objs, "ClusterRole", lambda r: r["rules"][0]["verbs"].append("create"))),
        ("a ClusterRole that may also read secrets",
         mutate(objs, "ClusterRole", lambda r: r["rules"].append(
             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}))),
        ("a ClusterRole on pods of another API group",
         mutate(objs, "ClusterRole", lambda r: r["rules"][0].update(apiGroups=["apps"]))),
        ("a binding to another namespace's service account",
         mutate(objs, "ClusterRoleBinding", lambda b: b["subjects"][0].update(namespace="default"))),
        ("a binding to another role",
         mutate(objs, "ClusterRoleBinding", lambda b: b["roleRef"].update(name="cluster-admin"))),
        ("a DaemonSet without hostPID",
         mutate(objs, "DaemonSet", lambda d: d["spec"]["template"]["spec"].pop("hostPID"))),
        ("an unprivileged agent",
         mutate(objs, "DaemonSet", lambda d: agent_ctr(d)["securityContext"].update(privileged=False))),
        ("no NODE_NAME", mutate(objs, "DaemonSet", drop_env)),
        ("NODE_NAME from the pod's name",
         mutate(objs, "DaemonSet", lambda d: next(e for e in agent_ctr(d)["env"] if e["name"] == "NODE_NAME")
                ["valueFrom"]["fieldRef"].update(fieldPath="metadata.name"))),
        ("no memory limit",
         mutate(objs, "DaemonSet", lambda d: agent_ctr(d)["resources"]["limits"].pop("memory"))),
        ("a toleration of one taint only",
         mutate(objs, "DaemonSet", lambda d: d["spec"]["template"]["spec"].update(
             tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]))),
        ("another service account",
         mutate(objs, "DaemonSet", lambda d: d["spec"]["template"]["spec"].update(serviceAccountName="default"))),
        ("an agent flag `ember help agent` does not list",
         mutate(objs, "DaemonSet", lambda d: agent_ctr(d)["args"].extend(["--kube-apiserver", "x"]))),
        ("no tracefs mount", mutate(objs, "DaemonSet", drop_mount("/sys/kernel/tracing"))),
        ("a writable cgroup mount", mutate(objs, "DaemonSet", writable("/sys/fs/cgroup"))),
        ("an option ember does not know", set_conf(objs, "\nkube-apiserver = https://x\n")),
        ("--config in the file", set_conf(objs, "\nconfig = /etc/other.conf\n")),
        ("a made-up profile family", set_conf(objs, "\nprofiles = cpu,heap\n")),
        ("a trailing comment", set_conf(objs, "\ninterval = 15 # seconds\n")),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir")
    ap.add_argument("--ember", help="the built agent (default: $EMBER_BUILD_DIR/ember, else SOURCE/build/ember)")
    ap.add_argument("--kubectl")
    args = ap.parse_args()
    src = dl.source_dir(args.source_dir)
    ember = args.ember or os.path.join(os.environ.get("EMBER_BUILD_DIR") or os.path.join(src, "build"), "ember")
    kubectl = find_kubectl(args.kubectl)
    c = dl.Checks("deploy.kubernetes")

    options = agent_options(ember)
    families = profile_families(ember)
    compose_vols, compose_image = compose_agent(os.path.join(src, "deploy", "docker-compose.yml"))
    c.check(compose_image, "compose: the ember service names no image")

    with tempfile.TemporaryDirectory() as tmp:
        objs, rendered, err = render(kubectl, src, kubectl_env(tmp))
    if objs is None:
        c.fail(err)
        c.finish()
    c.check(err is None, err or "")
    kinds = sorted(o.get("kind", "?") for o in objs)
    c.check(kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                             "ConfigMap", "DaemonSet"]), f"rendered kinds: {kinds}")
    # kustomize renders every file in kustomization.yaml; a file left out would not be applied.
    kdir = os.path.join(src, "deploy", "kubernetes")
    for f in sorted(os.listdir(kdir)):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml":
            with open(os.path.join(kdir, f)) as fh:
                names = re.findall(r"^  name: (\S+)", fh.read(), re.M)
            c.check(names and any(n in rendered for n in names), f"deploy/kubernetes/{f} is not rendered by the kustomization")

    errors = all_errors(objs, compose_vols, compose_image, options, families)
    for e in errors:
        c.fail(e)
    c.passed += 1 if not errors else 0
    for target in NOT_ON_KUBERNETES:
        c.check(any(t == target for _, t, _ in compose_vols),
                f"NOT_ON_KUBERNETES names {target}, which compose no longer mounts")
    print(f"compose agent mounts: {len(compose_vols)}; not on Kubernetes: "
          + "; ".join(f"{k} ({v})" for k, v in NOT_ON_KUBERNETES.items()))

    # The checkers must catch broken copies.
    for what, m in mutants(objs):
        c.check(all_errors(m, compose_vols, compose_image, options, families),
                f"self-test: {what} was not caught")
    c.finish()


if __name__ == "__main__":
    main()
