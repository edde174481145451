#!/usr/bin/env python3
"""Checks the flame graphs that unit_flamegraph writes, reading them as a browser would: as
XML, with geometry. Usage: check_svg.py DIR (holding fg_basic.svg, fg_names.svg, fg_empty.svg).

After the real files pass, the basic graph is broken on purpose in several ways and each
broken copy must be refused, so that a checker that accepts everything cannot go unnoticed.
Exit status 0 when everything holds, 1 otherwise. Python standard library only."""

import copy
import re
import sys
import xml.etree.ElementTree as ET

NS = "http://www.w3.org/2000/svg"
SVG = "{%s}" % NS
WIDTH = 1200
PAD = 10
CHAR_W = 7.2
TEXT_PAD = 3
CXX_NAME = "ns::W<int>::f(std::vector<int> const&)"
TIP = re.compile(r"^(.*) \(([0-9,]+) (\S+), ([0-9]+\.[0-9]{2})%\)$", re.S)


class Frame:
    def __init__(self, g):
        self.g = g
        title = g.find(SVG + "title")
        rect = g.find(SVG + "rect")
        text = g.find(SVG + "text")
        assert title is not None and rect is not None, "frame without <title> or <rect>"
        m = TIP.match(title.text or "")
        assert m, "hover text %r is not 'name (N unit, P.PP%%)'" % title.text
        self.name = m.group(1)
        self.count = int(m.group(2).replace(",", ""))
        self.unit = m.group(3)
        self.pct = float(m.group(4))
        self.x = float(rect.get("x"))
        self.y = float(rect.get("y"))
        self.w = float(rect.get("width"))
        self.label = text.text if text is not None else None


def frames_of(root):
    out = [Frame(g) for g in root.iter(SVG + "g") if g.get("class") == "f"]
    assert out, "no frames"
    return out


def by_name(frames, name):
    found = [f for f in frames if f.name == name]
    assert len(found) == 1, "expected one frame %r, found %d" % (name, len(found))
    return found[0]


def check_common(root, raw):
    """What every flame graph must satisfy: an SVG, a script, nothing external."""
    assert root.tag == SVG + "svg", "root element is %s" % root.tag
    assert root.get("width") == str(WIDTH), "width is %s" % root.get("width")
    scripts = list(root.iter(SVG + "script"))
    assert len(scripts) == 1 and "zoom" in (scripts[0].text or ""), "no zoom script"
    assert "<![CDATA[" in raw, "script is not in CDATA"
    assert "<!DOCTYPE" not in raw, "a DOCTYPE may name an external DTD"
    for el in root.iter():
        for attr, value in el.attrib.items():
            local = attr.split("}")[-1]
            assert local not in ("href", "src"), "external reference %s=%r" % (attr, value)
            assert "url(" not in value or "url(#" in value, "external url() %r" % value
        if el.tag in (SVG + "script", SVG + "style"):
            body = el.text or ""
            for word in ("http", "//cdn", "@import", "fetch(", "XMLHttpRequest", "src="):
                assert word not in body, "%s mentions %r" % (el.tag, word)
        assert el.tag.startswith(SVG), "foreign element %s" % el.tag
    assert raw.count("http") == 1, "something besides the xmlns mentions http"
    title = root.find(".//*[@id='title']")
    assert title is not None, "no title text"
    return title.text or ""


def check_labels(frames):
    """A label is the whole name, or a prefix and '..', and fits its frame."""
    for f in frames:
        if f.label is None:
            assert f.w < 2 * TEXT_PAD + 3 * CHAR_W or len(f.name) * CHAR_W > f.w - 2 * TEXT_PAD, \
                "%s has room for a label but has none" % f.name
            continue
        assert len(f.label) * CHAR_W <= f.w - 2 * TEXT_PAD + 0.01, "label %r overflows" % f.label
        if f.label != f.name:
            assert f.label.endswith("..") and f.name.startswith(f.label[:-2]), \
                "label %r is not a cut of %r" % (f.label, f.name)


def check_nesting(frames):
    """Each frame sits on exactly one frame one level below that contains it (the root at the
    bottom), and children do not add up to more than their parent."""
    root = max(frames, key=lambda f: f.y)
    for f in frames:
        if f is root:
            continue
        parents = [p for p in frames if abs(p.y - (f.y + 16)) < 0.01 and
                   p.x - 0.02 <= f.x and f.x + f.w <= p.x + p.w + 0.02]
        assert len(parents) == 1, "%s at y=%g rests on %d frames" % (f.name, f.y, len(parents))
        assert f.count <= parents[0].count, "%s counts more than its parent" % f.name
    for p in frames:
        kids = [f for f in frames if abs(f.y + 16 - p.y) < 0.01 and
                p.x - 0.02 <= f.x <= p.x + p.w + 0.02]
        assert sum(k.w for k in kids) <= p.w + 0.05, "children of %s are wider" % p.name


def check_basic(root, raw):
    title = check_common(root, raw)
    assert title == "CPU: 100 samples", "title is %r" % title
    frames = frames_of(root)
    names = sorted(f.name for f in frames)
    want = sorted(["all", "main", "alpha", "beta", "qsort", "gamma", CXX_NAME])
    assert names == want, "frames are %r" % names
    top = by_name(frames, "all")
    main, alpha, beta = by_name(frames, "main"), by_name(frames, "alpha"), by_name(frames, "beta")
    gamma, cxx = by_name(frames, "gamma"), by_name(frames, CXX_NAME)
    assert top.pct == 100.0 and top.count == 100, "root says %g%% of %d" % (top.pct, top.count)
    assert abs(top.w - (WIDTH - 2 * PAD)) < 0.01, "root is %g px wide" % top.w
    ratio = alpha.w / top.w
    assert abs(ratio - 0.60) <= 0.01, "alpha is %.3f of the root's width" % ratio
    assert abs(gamma.w / top.w - 0.10) <= 0.01, "gamma is %.3f wide" % (gamma.w / top.w)
    assert alpha.pct == 60.0 and alpha.count == 60 and alpha.unit == "samples"
    assert alpha.y < main.y < top.y, "alpha is not drawn above main above the root"
    assert alpha.y == beta.y, "siblings at different heights"
    assert gamma.y < by_name(frames, "qsort").y < beta.y, "gamma is not above qsort above beta"
    assert alpha.x < beta.x, "siblings are not in name order"
    assert cxx.label is not None and cxx.label.endswith(".."), "C++ label %r" % cxx.label
    check_labels(frames)
    check_nesting(frames)


def check_names(root, raw):
    title = check_common(root, raw)
    assert title == 'Odd <names> & "quotes": 1,000,000 bytes', "title is %r" % title
    frames = frames_of(root)
    names = {f.name for f in frames}
    for n in ("a&b<c>\"d'e", "bad\ufffd\ufffdname", "cut\ufffd\ufffd", "ctl\ufffd\ufffd",
              "caf\u00e9 \u2192 \U0001f525"):
        assert n in names, "no frame %r in %r" % (n, names)
    assert "tiny" not in names, "a 0.001 px frame was drawn"
    assert by_name(frames, "main").count == 999999, "tiny's count is lost from main"
    assert all(f.unit == "bytes" for f in frames)
    check_labels(frames)
    check_nesting(frames)


def check_empty(root, raw):
    title = check_common(root, raw)
    assert title == "CPU: 0 samples", "title is %r" % title
    assert not [g for g in root.iter(SVG + "g") if g.get("class") == "f"], "frames drawn"
    assert any((t.text or "") == "no samples" for t in root.iter(SVG + "text")), "no 'no samples'"


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    raw = data.decode("utf-8")  # must be valid UTF-8
    return ET.fromstring(data), raw


# Ways to break the basic graph; check_basic must refuse every one.
def _frame(root, name):
    return next(g for g in root.iter(SVG + "g") if g.get("class") == "f" and
                Frame(g).name == name)


def _set(root, name, attr, value):
    _frame(root, name).find(SVG + "rect").set(attr, value)


def _drop_script(root):
    for parent in root.iter():
        for child in list(parent):
            if child.tag == SVG + "script":
                parent.remove(child)


def _retitle(root, name, text):
    _frame(root, name).find(SVG + "title").text = text


MUTATIONS = {
    "alpha drawn below main": lambda r: _set(r, "alpha", "y", "500"),
    "alpha 50% wide": lambda r: _set(r, "alpha", "width", "590.00"),
    "no script": _drop_script,
    "external image": lambda r: ET.SubElement(r, SVG + "image", {"href": "http://x/y.png"}),
    "root at 99%": lambda r: _retitle(r, "all", "all (100 samples, 99.00%)"),
    "frame missing": lambda r: r.remove(_frame(r, "gamma")),
    "siblings swapped": lambda r: (_set(r, "alpha", "x", "482.00"), _set(r, "beta", "x", "10.00")),
}


def _reserialize(root):
    # ElementTree drops CDATA markers; put one back so that only the mutation can fail.
    return ET.tostring(root, encoding="unicode") + "<![CDATA[]]>"


def selftest(root):
    ET.register_namespace("", NS)
    intact = copy.deepcopy(root)
    check_basic(intact, _reserialize(intact))  # the control: unbroken, it still passes
    for what, mutate in MUTATIONS.items():
        broken = copy.deepcopy(root)
        mutate(broken)
        try:
            check_basic(broken, _reserialize(broken))
        except AssertionError:
            continue
        raise AssertionError("selftest: the checker accepted a graph with %s" % what)


def main(argv):
    if len(argv) != 2:
        print("usage: check_svg.py DIR", file=sys.stderr)
        return 2
    d = argv[1]
    failed = 0
    basic = None
    for name, check in (("fg_basic.svg", check_basic), ("fg_names.svg", check_names),
                        ("fg_empty.svg", check_empty)):
        try:
            root, raw = load("%s/%s" % (d, name))
            check(root, raw)
            if name == "fg_basic.svg":
                basic = root
            print("%s: ok" % name)
        except (AssertionError, ET.ParseError, UnicodeDecodeError, OSError) as e:
            print("%s: FAIL: %s" % (name, e), file=sys.stderr)
            failed += 1
    if basic is not None:
        try:
            selftest(basic)
            print("selftest: %d broken graphs refused" % len(MUTATIONS))
        except AssertionError as e:
            print("FAIL: %s" % e, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
