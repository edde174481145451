#!/usr/bin/python3
"""deploy.consistency: the pieces of the stack agree with each other and with Ember itself.

- Ports and URLs: the agent's --server and --metrics-addr in compose, Alloy's receive_http port,
  pyroscope.write URL, scrape target and remote-write URL, Prometheus's scrape target and
  receiver flag, the published ports, the Grafana datasources and the example config file.
- The `hostname` label that Prometheus and Alloy derive for the agent's metrics is the hostname
  the agent container reports (so the two dashboards' host pickers agree).
- Dashboards: the JSON loads; every panel type is one Grafana ships; every datasource uid is
  provisioned; every profileTypeId queried is one that `ember help profiles` prints (taken from
  the built binary, not from a list kept here); Pyroscope variables use the datasource's query
  objects (PYROSCOPE.md section 6); the CPU, alloc_space, inuse_space and GPU flame graphs each
  have a time series; Explore and Profiles Drilldown links carry the selection; Prometheus
  queries use only metric names the agent's sources define (when those sources are present).
- The checkers themselves are run on broken copies of the dashboards (a made-up profile type,
  an unknown datasource uid, an unknown panel type, a Prometheus-style variable string) and
  must reject each one.

usage: test_consistency.py --ember PATH [--source-dir DIR]"""

import argparse
import copy
import glob
import json
import os
import re
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as dl  # noqa: E402

# Panel types that Grafana ships (core panels); a dashboard must not need a plugin install.
GRAFANA_CORE_PANELS = {
    "timeseries", "flamegraph", "stat", "gauge", "bargauge", "table", "text", "row", "logs",
    "heatmap", "piechart", "barchart", "state-timeline", "status-history", "histogram",
    "nodeGraph", "traces", "news", "dashlist", "alertlist", "annolist", "canvas", "geomap",
    "xychart", "trend", "datagrid",
}
PYROSCOPE_TYPE = "grafana-pyroscope-datasource"
DRILLDOWN_APP = "grafana-pyroscope-app"
# The Pyroscope datasource's variable query objects (PYROSCOPE.md section 6).
PYRO_VAR_KEYS = {
    "profileType": set(),
    "label": {"profileTypeId"},
    "labelValue": {"profileTypeId", "labelName"},
}
VAR_REF = re.compile(r"^\$(\w+)$|^\$\{(\w+)(?::\w+)?\}$")


def ember_profile_types(ember):
    r = subprocess.run([ember, "help", "profiles"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: `{ember} help profiles` exited {r.returncode}: {r.stderr.strip()}")
    ids = {}
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        pid, _, family = line.partition("\t")
        if len(pid.split(":")) != 5:
            raise SystemExit(f"FAIL: `ember help profiles` printed a malformed ID: {line!r}")
        ids[pid] = family
    if not ids:
        raise SystemExit("FAIL: `ember help profiles` printed nothing")
    return ids


# ---- dashboard checks (functions of a dashboard; also run on broken copies) ----

def profile_type_vars(dash):
    return {v["name"] for v in dash.get("templating", {}).get("list", [])
            if dl.ds_uid(v.get("datasource")) == "pyroscope" and isinstance(v.get("query"), dict)
            and v["query"].get("type") == "profileType"}


def check_profile_type_id(pid, where, ember_ids, pt_vars, errors):
    m = VAR_REF.match(pid or "")
    if m:
        name = m.group(1) or m.group(2)
        if name not in pt_vars:
            errors.append(f"{where}: profileTypeId {pid!r} refers to ${name}, not a profileType variable")
        return
    if pid not in ember_ids:
        errors.append(f"{where}: profileTypeId {pid!r} is not one Ember emits ({sorted(ember_ids)})")


def dashboard_errors(dash, name, uids, ember_ids, agent_metrics):
    """Every rule a dashboard must keep; returns a list of messages (empty: all kept)."""
    errors = []
    pt_vars = profile_type_vars(dash)
    ids = set()
    for p in dl.all_panels(dash):
        where = f"{name}: panel {p.get('id')} {p.get('title')!r}"
        if p.get("type") not in GRAFANA_CORE_PANELS:
            errors.append(f"{where}: type {p.get('type')!r} is not a Grafana core panel")
        if p.get("id") in ids:
            errors.append(f"{where}: duplicate panel id")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            errors.append(f"{where}: no gridPos")
        if p.get("type") in ("row", "text"):
            continue
        if not dl.ds_uid(p.get("datasource")) in uids:
            errors.append(f"{where}: datasource {p.get('datasource')!r} is not provisioned")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"{where}: no queries")
        for t in targets:
            uid = dl.ds_uid(t.get("datasource", p.get("datasource")))
            if uid not in uids:
                errors.append(f"{where}: query {t.get('refId')} datasource {uid!r} is not provisioned")
                continue
            if uids[uid] == PYROSCOPE_TYPE:
                check_profile_type_id(t.get("profileTypeId"), where, ember_ids, pt_vars, errors)
                if t.get("queryType") not in ("profile", "metrics", "both"):
                    errors.append(f"{where}: queryType {t.get('queryType')!r}")
                if p.get("type") == "flamegraph" and t.get("queryType") != "profile":
                    errors.append(f"{where}: a flame graph needs queryType profile")
                if p.get("type") == "timeseries" and t.get("queryType") != "metrics":
                    errors.append(f"{where}: a time series needs queryType metrics")
                sel = t.get("labelSelector", "{}")
                if not (sel.startswith("{") and sel.endswith("}")):
                    errors.append(f"{where}: labelSelector {sel!r} is not a {{...}} matcher")
            elif uids[uid] == "prometheus" and agent_metrics is not None:
                for metric in re.findall(r"\b(ember_[a-z_]+)\b", t.get("expr", "")):
                    if metric not in agent_metrics:
                        errors.append(f"{where}: metric {metric} is not defined in the agent's sources")
    for v in dash.get("templating", {}).get("list", []):
        where = f"{name}: variable ${v.get('name')}"
        if v.get("type") != "query":
            continue
        uid = dl.ds_uid(v.get("datasource"))
        if uid not in uids:
            errors.append(f"{where}: datasource {uid!r} is not provisioned")
            continue
        if uids[uid] != PYROSCOPE_TYPE:
            continue
        q = v.get("query")
        if not isinstance(q, dict) or q.get("type") not in PYRO_VAR_KEYS:
            errors.append(f"{where}: a Pyroscope variable needs a query object "
                          f"{{type: profileType|label|labelValue}}, got {q!r}")
            continue
        missing = PYRO_VAR_KEYS[q["type"]] - set(q)
        if missing:
            errors.append(f"{where}: query object lacks {sorted(missing)}")
        if "profileTypeId" in q:
            check_profile_type_id(q["profileTypeId"], where, ember_ids, pt_vars, errors)
        if q["type"] == "profileType":
            cur = (v.get("current") or {}).get("value")
            if cur and cur not in ember_ids:
                errors.append(f"{where}: default {cur!r} is not one Ember emits")
    return errors


def explore_panes(url):
    """The decoded `panes` JSON of an Explore URL, with template variables given sample values."""
    u = urllib.parse.urlsplit(url)
    panes = urllib.parse.parse_qs(u.query).get("panes", [None])[0]
    if panes is None:
        return None
    sample = re.sub(r"\$\{__(from|to)\}", "1700000000000", panes)
    sample = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", "x", sample)
    return json.loads(sample)


def link_errors(dash, name, uids, ember_ids, pt_vars):
    errors, found = [], {"explore": 0, "drilldown": 0}
    links = list(dash.get("links", []))
    for p in dl.all_panels(dash):
        links += p.get("links", []) or []
    for link in links:
        url = link.get("url", "")
        if url.startswith("/explore"):
            found["explore"] += 1
            try:
                panes = explore_panes(url)
            except ValueError as e:
                errors.append(f"{name}: Explore link {link.get('title')!r}: panes is not JSON ({e})")
                continue
            for pane in (panes or {}).values():
                if pane.get("datasource") not in uids:
                    errors.append(f"{name}: Explore link {link.get('title')!r}: datasource not provisioned")
                for q in pane.get("queries", []):
                    if dl.ds_uid(q.get("datasource")) not in uids:
                        errors.append(f"{name}: Explore link {link.get('title')!r}: query datasource not provisioned")
                    raw = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["panes"][0]
                    m = re.search(r'"profileTypeId":"([^"]*)"', raw)
                    check_profile_type_id(m.group(1) if m else None, f"{name}: Explore link", ember_ids,
                                          pt_vars, errors)
                    if "$service" not in raw and "${service" not in raw:
                        errors.append(f"{name}: Explore link {link.get('title')!r} drops the service")
        elif f"/a/{DRILLDOWN_APP}/" in url:
            found["drilldown"] += 1
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            if q.get("var-dataSource", [None])[0] not in uids:
                errors.append(f"{name}: Drilldown link {link.get('title')!r}: var-dataSource not provisioned")
            pid = urllib.parse.unquote(q.get("var-profileMetricId", [""])[0])
            check_profile_type_id(pid, f"{name}: Drilldown link", ember_ids, pt_vars, errors)
            if "service" not in q.get("var-serviceName", [""])[0]:
                errors.append(f"{name}: Drilldown link {link.get('title')!r} drops the service")
            if "from" not in q or "to" not in q:
                errors.append(f"{name}: Drilldown link {link.get('title')!r} drops the time range")
    return errors, found


def agent_metric_names(src):
    """Metric names the agent's C sources define, or None when the metrics module is not there."""
    names = set()
    for path in glob.glob(os.path.join(src, "agent", "**", "*.[ch]"), recursive=True):
        with open(path, errors="replace") as f:
            names |= set(re.findall(r'"(ember_[a-z_]+)', f.read()))
    if "ember_samples_total" not in names:
        return None
    # Histogram and summary children come from the base name.
    for n in list(names):
        names |= {n + "_sum", n + "_count", n + "_bucket"}
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default=os.environ.get("EMBER_BIN"), help="the built ember binary")
    ap.add_argument("--source-dir")
    args = ap.parse_args()
    src = dl.source_dir(args.source_dir)
    if not args.ember or not os.access(args.ember, os.X_OK):
        print(f"FAIL: the ember binary {args.ember!r} is not there: build it first (make build)")
        sys.exit(1)
    yaml = dl.need_yaml()
    c = dl.Checks("deploy.consistency")
    ember_ids = ember_profile_types(args.ember)

    compose = dl.load_compose(yaml, os.path.join(src, "deploy", "docker-compose.yml"))
    svcs = compose["services"]
    alloy = dl.parse_alloy(os.path.join(src, "deploy", "alloy", "config.alloy"))
    with open(os.path.join(src, "deploy", "prometheus", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    datasources = []
    for path in sorted(glob.glob(os.path.join(src, "grafana", "provisioning", "datasources", "*.y*ml"))):
        with open(path) as f:
            datasources += (yaml.safe_load(f) or {}).get("datasources", [])
    uids = {d["uid"]: d["type"] for d in datasources}
    ds_by_type = {d["type"]: d for d in datasources}

    # -- the agent's command line in compose --
    cmd = dl.command_list(svcs["ember"])
    server = urllib.parse.urlsplit(dl.flag_value(cmd, "--server") or "")
    metrics_addr = dl.flag_value(cmd, "--metrics-addr") or ""
    metrics_port = int(metrics_addr.rsplit(":", 1)[1]) if ":" in metrics_addr else None
    c.check(server.hostname == "alloy", f"agent --server host {server.hostname!r} is not the alloy service")
    c.check(metrics_addr.startswith("0.0.0.0:"), f"agent --metrics-addr {metrics_addr!r} is not reachable from other containers")
    c.check(metrics_port in dl.published_ports(svcs["ember"]), "agent metrics port is not published")

    # -- Alloy: receive_http on the port the agent pushes to, published as the same port --
    rh = dl.alloy_blocks(alloy, "pyroscope.receive_http")
    c.check(len(rh) == 1, "alloy: want one pyroscope.receive_http")
    rh_port = None
    if rh:
        http = dl.alloy_blocks(rh[0], "http")
        rh_port = int(http[0]["attrs"].get("listen_port", "8080")) if http else 8080
        c.check("pyroscope.write." in rh[0]["attrs"].get("forward_to", ""), "alloy: receive_http does not forward to pyroscope.write")
    c.check(rh_port == server.port, f"agent pushes to port {server.port}, receive_http listens on {rh_port}")
    c.check(dl.published_ports(svcs["alloy"]).get(rh_port) == rh_port, f"alloy: port {rh_port} is not published as itself")
    alloy_cmd = dl.command_list(svcs["alloy"])
    listen = dl.flag_value(alloy_cmd, "--server.http.listen-addr") or ""
    c.check(listen == "0.0.0.0:12345", f"alloy: UI listen address {listen!r}, want 0.0.0.0:12345")
    c.check(dl.published_ports(svcs["alloy"]).get(12345) == 12345, "alloy: UI port 12345 not published")
    c.check("/etc/alloy/config.alloy" in alloy_cmd and any(
        str(v).startswith("./alloy/config.alloy:/etc/alloy/config.alloy") for v in svcs["alloy"].get("volumes", [])),
        "alloy: deploy/alloy/config.alloy is not the configuration it runs")

    # -- pyroscope.write -> Pyroscope, the same URL as the Grafana datasource --
    pw = dl.alloy_blocks(alloy, "pyroscope.write")
    pw_urls = [dl.alloy_string(e["attrs"].get("url", "")) for b in pw for e in dl.alloy_blocks(b, "endpoint")]
    pyro_ds = ds_by_type.get(PYROSCOPE_TYPE, {})
    c.check(pw_urls == ["http://pyroscope:4040"], f"alloy: pyroscope.write endpoints {pw_urls}")
    c.check(pyro_ds.get("uid") == "pyroscope" and pyro_ds.get("url") == "http://pyroscope:4040",
            f"grafana: Pyroscope datasource {pyro_ds}")
    c.check(dl.published_ports(svcs["pyroscope"]).get(4040) == 4040, "pyroscope: 4040 not published")
    for u in pw_urls + [pyro_ds.get("url", "")]:
        c.check(urllib.parse.urlsplit(u or "").hostname in svcs, f"{u}: host is not a compose service")

    # -- metrics: Prometheus scrapes the agent; Alloy scrapes it and remote-writes to Prometheus --
    prom_ds = ds_by_type.get("prometheus", {})
    c.check(prom_ds.get("uid") == "prometheus" and prom_ds.get("url") == "http://prometheus:9090",
            f"grafana: Prometheus datasource {prom_ds}")
    c.check(dl.published_ports(svcs["prometheus"]).get(9090) == 9090, "prometheus: 9090 not published")
    c.check("--web.enable-remote-write-receiver" in dl.command_list(svcs["prometheus"]),
            "prometheus: remote-write receiver not enabled, Alloy cannot write")
    c.check(any(str(v).startswith("./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml")
                for v in svcs["prometheus"].get("volumes", [])), "prometheus: deploy/prometheus/prometheus.yml not mounted")
    agent_target = f"ember:{metrics_port}"
    agent_hostname = svcs["ember"].get("hostname")
    ember_jobs = [j for j in prom.get("scrape_configs", [])
                  if any(agent_target in sc.get("targets", []) for sc in j.get("static_configs", []))]
    c.check(len(ember_jobs) == 1, f"prometheus: no single job scrapes {agent_target}")
    for j in ember_jobs:
        c.check(j.get("metrics_path", "/metrics") == "/metrics", "prometheus: agent metrics path is not /metrics")
        rules = [r for r in j.get("relabel_configs", []) if r.get("target_label") == "hostname"]
        c.check(len(rules) == 1, "prometheus: no hostname relabel rule for the agent")
        for r in rules:
            m = re.fullmatch(r["regex"], agent_target)
            got = m.expand(r.get("replacement", "$1").replace("$1", r"\1")) if m else None
            c.check(got == agent_hostname, f"prometheus: hostname label {got!r} != agent hostname {agent_hostname!r}")
    scrapes = dl.alloy_blocks(alloy, "prometheus.scrape")
    c.check(len(scrapes) == 1, "alloy: want one prometheus.scrape for the agent")
    relabels = {b["label"]: b for b in dl.alloy_blocks(alloy, "discovery.relabel")}
    for s in scrapes:
        targets_expr = s["attrs"].get("targets", "")
        rl = relabels.get(targets_expr.split(".")[2]) if targets_expr.startswith("discovery.relabel.") else None
        src_targets = dl.alloy_strings((rl or s)["attrs"].get("targets", ""))
        c.check(agent_target in src_targets, f"alloy: prometheus.scrape does not scrape {agent_target}")
        if rl:
            rule = [r for r in dl.alloy_blocks(rl, "rule") if dl.alloy_string(r["attrs"].get("target_label", "")) == "hostname"]
            if c.check(len(rule) == 1, "alloy: no hostname relabel rule for the agent"):
                m = re.fullmatch(dl.alloy_string(rule[0]["attrs"]["regex"]), agent_target)
                c.check(m and m.group(1) == agent_hostname,
                        f"alloy: hostname label {m and m.group(1)!r} != agent hostname {agent_hostname!r}")
        else:
            c.fail("alloy: the agent's scrape targets get no hostname label")
        job = dl.alloy_string(s["attrs"].get("job_name", '""'))
        c.check(job and job not in [j["job_name"] for j in ember_jobs],
                f"alloy: job_name {job!r} must differ from Prometheus's own job, or series collide")
        fwd = s["attrs"].get("forward_to", "")
        c.check("prometheus.remote_write." in fwd, "alloy: prometheus.scrape does not forward to remote_write")
    rw_urls = [dl.alloy_string(e["attrs"].get("url", "")) for b in dl.alloy_blocks(alloy, "prometheus.remote_write")
               for e in dl.alloy_blocks(b, "endpoint")]
    c.check(rw_urls == [prom_ds.get("url", "") + "/api/v1/write"], f"alloy: remote_write endpoints {rw_urls}")

    # -- the example config file and its defaults --
    conf = {}
    with open(os.path.join(src, "deploy", "ember.conf.example")) as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            key, eq, val = s.partition("=")
            if not c.check(eq and key.strip() and " #" not in val,
                           f"ember.conf.example:{n}: not `option = value` (no trailing comments): {s!r}"):
                continue
            conf.setdefault(key.strip(), []).append(val.strip())
    c.check(urllib.parse.urlsplit(conf.get("server", [""])[0]).port == 4040,
            "ember.conf.example: server is not Pyroscope's port 4040")
    c.check(conf.get("metrics-addr", [""])[0].endswith(f":{metrics_port}"),
            f"ember.conf.example: metrics-addr port differs from compose's {metrics_port}")
    for fam in conf.get("profiles", [""])[0].split(","):
        c.check(fam in set(ember_ids.values()), f"ember.conf.example: profile family {fam!r} unknown to ember")
    r = subprocess.run([args.ember, "agent", "--help"], capture_output=True, text=True, timeout=30)
    if r.returncode == 0 and "--server" in r.stdout + r.stderr:
        helptext = r.stdout + r.stderr
        for key in conf:
            c.check(f"--{key}" in helptext, f"ember.conf.example: option {key!r} is not in `ember agent --help`")
        with open(os.path.join(src, "deploy", "ember-agent.service")) as f:
            unit = f.read()
        # Flags given to ember: the unit's directives, not its comments (`systemctl --now`).
        directives = "\n".join(l for l in unit.splitlines() if not l.lstrip().startswith("#"))
        for opt in set(re.findall(r"(--[a-z][a-z-]+)", directives)):
            c.check(opt in helptext, f"ember-agent.service: {opt} is not in `ember agent --help`")
    else:
        c.check(False, f"`ember agent --help` must list the agent's options (exit {r.returncode})")

    # -- Grafana: provisioning, dashboards --
    with open(os.path.join(src, "grafana", "provisioning", "dashboards", "ember.yml")) as f:
        providers = yaml.safe_load(f)["providers"]
    gvols = [str(v) for v in svcs["grafana"].get("volumes", [])]
    c.check(any(v.startswith("../grafana/provisioning:/etc/grafana/provisioning") for v in gvols),
            "grafana: provisioning directory not mounted")
    for p in providers:
        path = p["options"]["path"]
        c.check(any(v.startswith("../grafana/dashboards:" + path) for v in gvols),
                f"grafana: dashboard provider path {path} is not where grafana/dashboards is mounted")
    plugin_files = glob.glob(os.path.join(src, "grafana", "provisioning", "plugins", "*.y*ml"))
    apps = []
    for path in plugin_files:
        with open(path) as f:
            apps += [a.get("type") for a in (yaml.safe_load(f) or {}).get("apps", [])]
    c.check(DRILLDOWN_APP in apps, "grafana: Profiles Drilldown app is not provisioned")

    agent_metrics = agent_metric_names(src)
    c.check(agent_metrics is not None, "the agent's metric names are found in agent/*.c")
    dashboards = {}
    for path in sorted(glob.glob(os.path.join(src, "grafana", "dashboards", "*.json"))):
        with open(path) as f:
            try:
                dashboards[os.path.basename(path)] = json.load(f)
            except ValueError as e:
                c.fail(f"{path}: not JSON: {e}")
    c.check({"profiling.json", "ember-agent.json"} <= set(dashboards), f"dashboards: {sorted(dashboards)}")
    c.check(len({d.get("uid") for d in dashboards.values()}) == len(dashboards), "dashboards share a uid")
    for name, dash in dashboards.items():
        for e in dashboard_errors(dash, name, uids, ember_ids, agent_metrics):
            c.fail(e)
        c.passed += 1

    prof = dashboards.get("profiling.json", {})
    # Every family Ember emits has a time series and a flame graph of its first type there.
    for fam in sorted({pid.split(":")[0] for pid in ember_ids}):
        first = next(pid for pid in sorted(ember_ids) if pid.split(":")[0] == fam)
        kinds = {p.get("type") for p in dl.all_panels(prof)
                 for t in (p.get("targets") or []) if (t.get("profileTypeId") or "").split(":")[0] == fam}
        c.check({"timeseries", "flamegraph"} <= kinds,
                f"profiling.json has a time series and a flame graph of {fam} ({first}...): {sorted(kinds)}")
    vars_ = {v["name"]: v for v in prof.get("templating", {}).get("list", [])}
    for name, want in (("profile_type", ("profileType", None)), ("service", ("labelValue", "service_name")),
                       ("hostname", ("labelValue", "hostname"))):
        q = (vars_.get(name) or {}).get("query") or {}
        c.check(isinstance(q, dict) and q.get("type") == want[0] and q.get("labelName") == want[1],
                f"profiling.json: variable ${name} is not a {want[0]} query{' on ' + want[1] if want[1] else ''}")
    # Flame graphs for CPU, alloc_space, inuse_space and GPU time, each with its time series.
    by_type = {}
    for p in dl.all_panels(prof):
        for t in p.get("targets", []) or []:
            by_type.setdefault(t.get("profileTypeId"), set()).add(p.get("type"))
    wanted = {
        "cpu": [i for i in ember_ids if i.split(":")[1] == "cpu"],
        "alloc_space": [i for i in ember_ids if i.split(":")[1] == "alloc_space"],
        "inuse_space": [i for i in ember_ids if i.split(":")[1] == "inuse_space"],
        "gpu_time": [i for i in ember_ids if i.split(":")[1] == "gpu_time"],
    }
    for what, ids in wanted.items():
        if not c.check(len(ids) == 1, f"ember help profiles: expected one {what} type, got {ids}"):
            continue
        c.check({"flamegraph", "timeseries"} <= by_type.get(ids[0], set()),
                f"profiling.json: {what} ({ids[0]}) needs a flame graph and a time series")
    errs, found = link_errors(prof, "profiling.json", uids, ember_ids, profile_type_vars(prof))
    for e in errs:
        c.fail(e)
    c.check(found["explore"] >= 1 and found["drilldown"] >= 1, f"profiling.json: links found {found}")
    agent_dash = dashboards.get("ember-agent.json", {})
    exprs = " ".join(t.get("expr", "") for p in dl.all_panels(agent_dash) for t in p.get("targets", []) or [])
    for metric in ("ember_samples_total", "ember_samples_lost_total", "ember_profiles_sent_total",
                   "ember_profiles_failed_total", "ember_upload_queue_bytes",
                   "ember_agent_cpu_seconds_total", "ember_agent_resident_memory_bytes"):
        c.check(metric in exprs, f"ember-agent.json: {metric} is not shown")
    c.check("by (hostname" in exprs, "ember-agent.json: nothing is shown per host")

    # -- the checkers must catch broken dashboards --
    if prof:
        mutants = []
        m = copy.deepcopy(prof)
        next(p for p in m["panels"] if p.get("type") == "flamegraph")["targets"][0]["profileTypeId"] = \
            "process_cpu:made_up:nanoseconds:cpu:nanoseconds"
        mutants.append(("made-up profileTypeId", m))
        m = copy.deepcopy(prof)
        next(p for p in m["panels"] if p.get("type") == "timeseries")["datasource"] = {"type": PYROSCOPE_TYPE, "uid": "nope"}
        mutants.append(("unprovisioned datasource uid", m))
        m = copy.deepcopy(prof)
        next(p for p in m["panels"] if p.get("type") == "flamegraph")["type"] = "pyroscope-panel"
        mutants.append(("plugin panel type", m))
        m = copy.deepcopy(prof)
        next(v for v in m["templating"]["list"] if v["name"] == "service")["query"] = "label_values(service_name)"
        mutants.append(("Prometheus-style variable string", m))
        m = copy.deepcopy(prof)
        next(v for v in m["templating"]["list"] if v["name"] == "hostname")["query"]["profileTypeId"] = "memory:made_up:bytes::"
        mutants.append(("variable on a made-up profile type", m))
        for what, m in mutants:
            c.check(dashboard_errors(m, "mutant", uids, ember_ids, agent_metrics),
                    f"self-test: a dashboard with a {what} was not caught")
        m = copy.deepcopy(prof)
        m["links"][0]["url"] = m["links"][0]["url"].replace("%24%7Bprofile_type", "X").replace(
            "${profile_type:percentencode}", "memory%3Abogus%3Abytes%3Aspace%3Abytes")
        c.check(link_errors(m, "mutant", uids, ember_ids, profile_type_vars(m))[0],
                "self-test: an Explore link with a made-up profile type was not caught")

    c.finish()


if __name__ == "__main__":
    main()
