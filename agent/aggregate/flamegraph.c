/* flamegraph: a merged tree of stacks, written as a self-contained interactive SVG.
 *
 * The tree is a flat array of nodes (node 0 is the synthetic root "all"); a child is found by
 * an open-addressing hash on (parent, name id), and names are interned once each. Child order
 * is only decided when writing: siblings are sorted by name, so the output is deterministic. */
#include "flamegraph.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "hash.h"
#include "log.h"
#include "strset.h"

/* Layout in SVG user units (px). The script repeats FG_WIDTH, FG_PAD, FG_CHAR_W, FG_TEXT_PAD
 * and FG_TEXT_DY so that labels are cut the same way after a zoom. */
#define FG_WIDTH	1200
#define FG_PAD		10	/* left and right margin */
#define FG_FRAME_H	16	/* one stack level: a 15 px frame and a 1 px gap */
#define FG_TOP		60	/* title and controls */
#define FG_BOTTOM	28	/* hover details line */
#define FG_CHAR_W	7.2	/* advance of a 12 px monospace glyph (0.6 em) */
#define FG_TEXT_PAD	3	/* label inset from the frame's left edge */
#define FG_TEXT_DY	11.5	/* label baseline below the frame's top */
#define FG_MIN_PX	0.1	/* narrower frames are left out; their counts stay in the parent */
#define FG_STR_(x)	#x
#define FG_STR(x)	FG_STR_(x)

/* 16000 distinct stacks of 64 distinct frames need about 1M nodes; beyond this limit a stack
 * is cut at the deepest frame that already exists and its count lands there. */
#define FG_MAX_NODES	(1u << 21)
#define FG_NONE		UINT32_MAX

struct fg_node {
	uint32_t name;		/* index into flamegraph.names */
	uint32_t parent;	/* node index; FG_NONE for the root */
	uint32_t depth;		/* 0 for the root */
	uint64_t total;		/* count of this frame and everything above it */
};

struct flamegraph {
	char *title;
	char *unit;
	struct fg_node *nodes;
	uint32_t nr_nodes, cap_nodes;
	uint32_t *node_tab;	/* node index; 0 = empty slot (the root is nobody's child) */
	uint32_t node_tab_size;	/* power of two */
	struct strset *names;	/* frame names; a name's hash also picks its colour */
	uint32_t nr_names;	/* strset_count(names) */
	uint64_t dropped;	/* stacks cut short at FG_MAX_NODES */
};

static uint32_t fg_hash_pair(uint32_t a, uint32_t b)
{
	return (uint32_t)hash_mix64(((uint64_t)a << 32) | b);
}

/* Grows *p (of *cap elements) to hold at least need elements. */
static int fg_grow(void **p, uint32_t *cap, size_t elem, uint32_t need)
{
	uint32_t new_cap;
	void *q;

	if (need <= *cap)
		return 0;
	new_cap = *cap ? *cap : 64;
	while (new_cap < need) {
		if (new_cap > UINT32_MAX / 2)
			return -ENOMEM;
		new_cap *= 2;
	}
	q = reallocarray(*p, new_cap, elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = new_cap;
	return 0;
}

/* Finds name, or adds it if create is set (else -ENOENT). */
static int fg_intern(struct flamegraph *fg, const char *name, bool create, uint32_t *ret_id)
{
	size_t len = strlen(name);
	int err;

	if (!create)
		return strset_find(fg->names, name, len, ret_id);
	err = strset_intern(fg->names, name, len, ret_id);
	if (err)
		return err == -ENOSPC ? -E2BIG : err;
	fg->nr_names = (uint32_t)strset_count(fg->names);
	return 0;
}

static int fg_node_tab_grow(struct flamegraph *fg)
{
	uint32_t size = fg->node_tab_size ? fg->node_tab_size * 2 : 1024;
	uint32_t *tab, i, slot;

	tab = calloc(size, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (i = 1; i < fg->nr_nodes; i++) {
		slot = fg_hash_pair(fg->nodes[i].parent, fg->nodes[i].name) & (size - 1);
		while (tab[slot])
			slot = (slot + 1) & (size - 1);
		tab[slot] = i;
	}
	free(fg->node_tab);
	fg->node_tab = tab;
	fg->node_tab_size = size;
	return 0;
}

/* Finds or creates the child of parent called name. -E2BIG when the node limit is reached. */
static int fg_child(struct flamegraph *fg, uint32_t parent, uint32_t name, uint32_t *ret_node)
{
	uint32_t slot, idx;
	struct fg_node *n;
	int err;

	if ((uint64_t)(fg->nr_nodes + 1) * 2 > fg->node_tab_size) {
		err = fg_node_tab_grow(fg);
		if (err)
			return err;
	}
	slot = fg_hash_pair(parent, name) & (fg->node_tab_size - 1);
	while ((idx = fg->node_tab[slot])) {
		if (fg->nodes[idx].parent == parent && fg->nodes[idx].name == name) {
			*ret_node = idx;
			return 0;
		}
		slot = (slot + 1) & (fg->node_tab_size - 1);
	}

	if (fg->nr_nodes >= FG_MAX_NODES)
		return -E2BIG;
	err = fg_grow((void **)&fg->nodes, &fg->cap_nodes, sizeof(*fg->nodes), fg->nr_nodes + 1);
	if (err)
		return err;
	idx = fg->nr_nodes++;
	n = &fg->nodes[idx];
	n->name = name;
	n->parent = parent;
	n->depth = fg->nodes[parent].depth + 1;
	n->total = 0;
	fg->node_tab[slot] = idx;
	*ret_node = idx;
	return 0;
}

void flamegraph_view_of(const char *family, int64_t period, const char *title,
			struct flamegraph_view *ret)
{
	*ret = (struct flamegraph_view){ .title = title, .unit = "samples", .divisor = 1 };
	if (!strcmp(family, "cpu")) {
		ret->divisor = period > 0 ? period : 1;
	} else if (!strcmp(family, "alloc")) {
		ret->unit = "bytes";
		ret->value = 1; /* alloc_space */
	} else if (!strcmp(family, "gpu")) {
		ret->unit = "ns"; /* gpu_time */
	} else if (!strcmp(family, "offcpu")) {
		ret->unit = "ns"; /* off_cpu */
	}
}

struct flamegraph *flamegraph_new(const char *title, const char *unit)
{
	struct flamegraph *fg;
	uint32_t root_name;

	fg = calloc(1, sizeof(*fg));
	if (!fg)
		return NULL;
	fg->title = strdup(title ? title : "Flame Graph");
	fg->unit = strdup(unit ? unit : "samples");
	if (!fg->title || !fg->unit)
		goto err_free;
	/* A new name means a new node, so FG_MAX_NODES bounds the names too. */
	if (strset_new(FG_MAX_NODES, STRSET_UNBOUNDED, &fg->names))
		goto err_free;
	if (fg_intern(fg, "all", true, &root_name))
		goto err_free;
	if (fg_grow((void **)&fg->nodes, &fg->cap_nodes, sizeof(*fg->nodes), 1))
		goto err_free;
	fg->nodes[0] = (struct fg_node){ .name = root_name, .parent = FG_NONE };
	fg->nr_nodes = 1;
	return fg;

err_free:
	flamegraph_free(fg);
	return NULL;
}

void flamegraph_free(struct flamegraph *fg)
{
	if (!fg)
		return;
	strset_free(fg->names);
	free(fg->nodes);
	free(fg->node_tab);
	free(fg->title);
	free(fg->unit);
	free(fg);
}

int flamegraph_add(struct flamegraph *fg, const char *const *frames, size_t n, uint64_t count)
{
	uint32_t cur = 0, name, child;
	size_t i;
	int err = 0;

	if (!fg || (n && !frames))
		return -EINVAL;
	if (!count)
		return 0;

	/* On -ENOMEM the frames created so far stay with a count of 0; they are never drawn. */
	for (i = 0; i < n; i++) {
		/* At the node limit no new name can be needed: a new name means a new node. */
		err = fg_intern(fg, frames[i] ? frames[i] : "[unknown]",
				fg->nr_nodes < FG_MAX_NODES, &name);
		if (!err)
			err = fg_child(fg, cur, name, &child);
		if (err == -E2BIG || err == -ENOENT) {
			if (!fg->dropped++)
				log_debug("flamegraph: %u frames, cutting stacks short", FG_MAX_NODES);
			break;
		}
		if (err)
			return err;
		cur = child;
	}
	for (;;) {
		fg->nodes[cur].total += count;
		if (cur == 0)
			break;
		cur = fg->nodes[cur].parent;
	}
	return 0;
}

uint64_t flamegraph_total(const struct flamegraph *fg)
{
	return fg ? fg->nodes[0].total : 0;
}

/* ---- Layout ---------------------------------------------------------------------------- */

struct fg_layout {
	uint32_t *first_child;	/* per node, siblings in name order */
	uint32_t *next_sibling;
	uint64_t *offset;	/* per node: count to the left of the frame */
	uint32_t *drawn;	/* nodes wide enough to draw, in pre-order */
	uint32_t nr_drawn;
	uint32_t max_depth;	/* of drawn nodes */
	double scale;		/* px per count */
};

static void fg_layout_fini(struct fg_layout *lay)
{
	free(lay->first_child);
	free(lay->next_sibling);
	free(lay->offset);
	free(lay->drawn);
}

static int fg_cmp_name(const void *a, const void *b, void *arg)
{
	const struct strset *names = arg;

	return strcmp(strset_str(names, *(const uint32_t *)a), strset_str(names, *(const uint32_t *)b));
}

struct fg_key {
	uint64_t key;		/* parent << 32 | name rank */
	uint32_t node;
};

static int fg_cmp_key(const void *a, const void *b)
{
	uint64_t x = ((const struct fg_key *)a)->key, y = ((const struct fg_key *)b)->key;

	return x < y ? -1 : x > y;
}

/* Links siblings in name order, then walks the tree depth first and keeps the frames that are
 * at least FG_MIN_PX wide. Only called with a non-zero total. */
static int fg_layout(const struct flamegraph *fg, struct fg_layout *lay)
{
	uint32_t nr = fg->nr_nodes, i, cur, *order = NULL, *rank = NULL;
	struct fg_key *keys = NULL;
	int err = -ENOMEM;

	lay->scale = (double)(FG_WIDTH - 2 * FG_PAD) / (double)fg->nodes[0].total;
	lay->first_child = malloc(nr * sizeof(*lay->first_child));
	lay->next_sibling = malloc(nr * sizeof(*lay->next_sibling));
	lay->offset = calloc(nr, sizeof(*lay->offset));
	lay->drawn = malloc(nr * sizeof(*lay->drawn));
	order = malloc(fg->nr_names * sizeof(*order));
	rank = malloc(fg->nr_names * sizeof(*rank));
	keys = malloc(nr * sizeof(*keys));
	if (!lay->first_child || !lay->next_sibling || !lay->offset || !lay->drawn || !order ||
	    !rank || !keys)
		goto cleanup;

	/* Rank the names once, so that sorting nodes compares integers, not strings. */
	for (i = 0; i < fg->nr_names; i++)
		order[i] = i;
	qsort_r(order, fg->nr_names, sizeof(*order), fg_cmp_name, fg->names);
	for (i = 0; i < fg->nr_names; i++)
		rank[order[i]] = i;

	for (i = 1; i < nr; i++) {
		keys[i - 1].key = (uint64_t)fg->nodes[i].parent << 32 | rank[fg->nodes[i].name];
		keys[i - 1].node = i;
	}
	qsort(keys, nr - 1, sizeof(*keys), fg_cmp_key);
	for (i = 0; i < nr; i++)
		lay->first_child[i] = lay->next_sibling[i] = FG_NONE;
	for (i = 0; i + 1 < nr; i++) {
		uint32_t node = keys[i].node, parent = fg->nodes[node].parent;

		if (i == 0 || fg->nodes[keys[i - 1].node].parent != parent)
			lay->first_child[parent] = node;
		else
			lay->next_sibling[keys[i - 1].node] = node;
	}

	/* Pre-order walk without a stack: down to the first child, else to the next sibling,
	 * else up until some ancestor has one. */
	cur = 0;
	for (;;) {
		bool wide = (double)fg->nodes[cur].total * lay->scale >= FG_MIN_PX;
		uint32_t next;

		if (wide) {
			lay->drawn[lay->nr_drawn++] = cur;
			if (fg->nodes[cur].depth > lay->max_depth)
				lay->max_depth = fg->nodes[cur].depth;
		}
		if (wide && lay->first_child[cur] != FG_NONE) {
			next = lay->first_child[cur];
			lay->offset[next] = lay->offset[cur];
			cur = next;
			continue;
		}
		while (cur != 0 && lay->next_sibling[cur] == FG_NONE)
			cur = fg->nodes[cur].parent;
		if (cur == 0)
			break;
		next = lay->next_sibling[cur];
		lay->offset[next] = lay->offset[cur] + fg->nodes[cur].total;
		cur = next;
	}
	err = 0;

cleanup:
	free(keys);
	free(rank);
	free(order);
	return err;
}

/* ---- SVG text ---------------------------------------------------------------------------- */

/* Decodes one character of a NUL-terminated string. Returns the bytes it takes (at least 1)
 * and sets *ret_cp, which is U+FFFD for an invalid byte (bad lead or continuation byte, an
 * overlong form, a surrogate, beyond U+10FFFF) and for characters XML 1.0 does not allow or
 * that do not belong in a label (C0 controls, U+FFFE, U+FFFF). */
static size_t fg_utf8_next(const unsigned char *s, uint32_t *ret_cp)
{
	unsigned char c = s[0];
	uint32_t cp;
	size_t len, i;

	if (c < 0x80) {
		*ret_cp = c < 0x20 ? 0xfffd : c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		cp = c & 0x1f;
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		cp = c & 0x0f;
		len = 3;
	} else if (c >= 0xf0 && c <= 0xf4) {
		cp = c & 0x07;
		len = 4;
	} else {
		*ret_cp = 0xfffd;
		return 1;
	}
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*ret_cp = 0xfffd;
			return 1;
		}
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff)) {
		*ret_cp = 0xfffd;
		return 1;
	}
	*ret_cp = (cp == 0xfffe || cp == 0xffff) ? 0xfffd : cp;
	return len;
}

static size_t fg_utf8_count(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;
	uint32_t cp;

	while (*p) {
		p += fg_utf8_next(p, &cp);
		n++;
	}
	return n;
}

/* Writes at most max characters of s as XML character data, safe in attributes too. */
static void fg_put_text(FILE *out, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, n;
	uint32_t cp;

	for (n = 0; *p && n < max; n++, p += len) {
		len = fg_utf8_next(p, &cp);
		switch (cp) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '"': fputs("&quot;", out); break;
		case '\'': fputs("&apos;", out); break;
		case 0xfffd: fputs("\xef\xbf\xbd", out); break;
		default: fwrite(p, 1, len, out); break;
		}
	}
}

/* Formats v with thousands separators: 12345 -> "12,345". */
static const char *fg_fmt_count(uint64_t v, char buf[static 32])
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%" PRIu64, v), i, j = 0;

	for (i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			buf[j++] = ',';
		buf[j++] = digits[i];
	}
	buf[j] = '\0';
	return buf;
}

/* A warm red-orange-yellow from the name hash; kernel frames ("..._[k]") are blue-grey. */
static void fg_colour(const char *name, uint32_t h, unsigned rgb[3])
{
	size_t len = strlen(name);
	unsigned a = h & 0xff, b = (h >> 8) & 0xff, c = (h >> 16) & 0xff;

	if (len >= 4 && strcmp(name + len - 4, "_[k]") == 0) {
		rgb[0] = 110 + a * 50 / 255;
		rgb[1] = 150 + b * 50 / 255;
		rgb[2] = 190 + c * 50 / 255;
	} else {
		rgb[0] = 205 + a * 50 / 255;
		rgb[1] = 70 + b * 160 / 255;
		rgb[2] = 20 + c * 50 / 255;
	}
}

/* The zoom and search script. Frames are <g class="f"> holding <title>, <rect>, <text>. */
static const char fg_script[] =
	"\"use strict\";\n"
	"(function () {\n"
	"\tvar W = " FG_STR(FG_WIDTH) ", PAD = " FG_STR(FG_PAD) ", CW = " FG_STR(FG_CHAR_W)
	", TP = " FG_STR(FG_TEXT_PAD) ", DY = " FG_STR(FG_TEXT_DY) ";\n"
	"\tvar doc = document, ns = doc.documentElement.namespaceURI;\n"
	"\tvar frames = Array.prototype.slice.call(doc.querySelectorAll(\"g.f\"));\n"
	"\tvar info = doc.getElementById(\"info\"), reset = doc.getElementById(\"reset\");\n"
	"\tvar search = doc.getElementById(\"search\"), matched = doc.getElementById(\"matched\");\n"
	"\n"
	"\tframes.forEach(function (g) {\n"
	"\t\tvar r = g.getElementsByTagName(\"rect\")[0];\n"
	"\t\tvar tip = g.getElementsByTagName(\"title\")[0].textContent;\n"
	"\t\tg.fg = { r: r, x: +r.getAttribute(\"x\"), y: +r.getAttribute(\"y\"),\n"
	"\t\t\tw: +r.getAttribute(\"width\"), fill: r.getAttribute(\"fill\"),\n"
	"\t\t\tname: tip.slice(0, tip.lastIndexOf(\" (\")) };\n"
	"\t\tg.addEventListener(\"click\", function () { zoom(g); });\n"
	"\t\tg.addEventListener(\"mouseover\", function () { info.textContent = tip; });\n"
	"\t\tg.addEventListener(\"mouseout\", function () { info.textContent = \"\"; });\n"
	"\t});\n"
	"\n"
	"\t/* Same rule as the writer: whole name, or a prefix and \"..\", or nothing. */\n"
	"\tfunction label(g, x, w) {\n"
	"\t\tvar f = g.fg, t = g.getElementsByTagName(\"text\")[0];\n"
	"\t\tvar chars = Array.from(f.name), fit = Math.floor((w - 2 * TP) / CW), s = \"\";\n"
	"\t\tif (chars.length <= fit)\n"
	"\t\t\ts = f.name;\n"
	"\t\telse if (fit >= 3)\n"
	"\t\t\ts = chars.slice(0, fit - 2).join(\"\") + \"..\";\n"
	"\t\tif (!t) {\n"
	"\t\t\tif (!s)\n"
	"\t\t\t\treturn;\n"
	"\t\t\tt = doc.createElementNS(ns, \"text\");\n"
	"\t\t\tt.setAttribute(\"y\", f.y + DY);\n"
	"\t\t\tg.appendChild(t);\n"
	"\t\t}\n"
	"\t\tt.setAttribute(\"x\", (x + TP).toFixed(2));\n"
	"\t\tt.textContent = s;\n"
	"\t}\n"
	"\n"
	"\tfunction place(g, x, w, ancestor) {\n"
	"\t\tg.style.display = \"\";\n"
	"\t\tg.setAttribute(\"class\", ancestor ? \"f anc\" : \"f\");\n"
	"\t\tg.fg.r.setAttribute(\"x\", x.toFixed(2));\n"
	"\t\tg.fg.r.setAttribute(\"width\", w.toFixed(2));\n"
	"\t\tlabel(g, x, w);\n"
	"\t}\n"
	"\n"
	"\t/* z fills the width; frames above it scale with it; frames below it that contain it\n"
	"\t * (its ancestors) stay, drawn full width; everything else is hidden. Positions are\n"
	"\t * compared with a small slack because the writer rounds them to 0.01 px. */\n"
	"\tfunction zoom(z) {\n"
	"\t\tvar x0 = z.fg.x, x1 = z.fg.x + z.fg.w, k = (W - 2 * PAD) / z.fg.w, e = 0.05;\n"
	"\t\tframes.forEach(function (g) {\n"
	"\t\t\tvar f = g.fg;\n"
	"\t\t\tif (f.y <= z.fg.y && f.x >= x0 - e && f.x + f.w <= x1 + e)\n"
	"\t\t\t\tplace(g, PAD + (f.x - x0) * k, f.w * k, false);\n"
	"\t\t\telse if (f.y > z.fg.y && f.x <= x0 + e && f.x + f.w >= x1 - e)\n"
	"\t\t\t\tplace(g, PAD, W - 2 * PAD, true);\n"
	"\t\t\telse\n"
	"\t\t\t\tg.style.display = \"none\";\n"
	"\t\t});\n"
	"\t\treset.style.display = \"\";\n"
	"\t}\n"
	"\n"
	"\tfunction unzoom() {\n"
	"\t\tframes.forEach(function (g) { place(g, g.fg.x, g.fg.w, false); });\n"
	"\t\treset.style.display = \"none\";\n"
	"\t}\n"
	"\n"
	"\t/* Colours matching frames and reports the share of the width they cover, counting\n"
	"\t * a match nested in another match once. */\n"
	"\tfunction find(re) {\n"
	"\t\tvar spans = [], end = -1, sum = 0;\n"
	"\t\tframes.forEach(function (g) {\n"
	"\t\t\tvar f = g.fg, hit = re !== null && re.test(f.name);\n"
	"\t\t\tf.r.setAttribute(\"fill\", hit ? \"rgb(225,60,225)\" : f.fill);\n"
	"\t\t\tif (hit)\n"
	"\t\t\t\tspans.push([f.x, f.x + f.w]);\n"
	"\t\t});\n"
	"\t\tspans.sort(function (a, b) { return a[0] - b[0]; });\n"
	"\t\tspans.forEach(function (s) {\n"
	"\t\t\tif (s[1] > end) {\n"
	"\t\t\t\tsum += s[1] - Math.max(s[0], end);\n"
	"\t\t\t\tend = s[1];\n"
	"\t\t\t}\n"
	"\t\t});\n"
	"\t\tmatched.textContent = re === null ? \"\" :\n"
	"\t\t\t\"Matched: \" + (100 * sum / (W - 2 * PAD)).toFixed(1) + \"%\";\n"
	"\t}\n"
	"\n"
	"\treset.addEventListener(\"click\", unzoom);\n"
	"\tsearch.addEventListener(\"click\", function () {\n"
	"\t\tvar q = window.prompt(\"Search function names (regular expression; empty clears)\", \"\");\n"
	"\t\tif (q === null)\n"
	"\t\t\treturn;\n"
	"\t\ttry {\n"
	"\t\t\tfind(q === \"\" ? null : new RegExp(q));\n"
	"\t\t} catch (err) {\n"
	"\t\t\tinfo.textContent = \"Search: \" + err.message;\n"
	"\t\t}\n"
	"\t});\n"
	"\tdoc.addEventListener(\"keydown\", function (ev) {\n"
	"\t\tif (ev.key === \"Escape\")\n"
	"\t\t\tunzoom();\n"
	"\t});\n"
	"})();\n";

static void fg_write_head(const struct flamegraph *fg, FILE *out, int height)
{
	char total[32];

	fprintf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\""
		" viewBox=\"0 0 %d %d\">\n"
		"<style type=\"text/css\"><![CDATA[\n"
		"text { font-family: monospace; font-size: 12px; fill: #222; }\n"
		"#title { font-size: 17px; text-anchor: middle; }\n"
		"#nodata { font-size: 15px; text-anchor: middle; fill: #777; }\n"
		".ctl { fill: #1f4e9c; cursor: pointer; }\n"
		".ctl:hover { text-decoration: underline; }\n"
		"g.f { cursor: pointer; }\n"
		"g.f text { pointer-events: none; }\n"
		"g.f:hover rect { stroke: #333; stroke-width: 0.6; }\n"
		"g.anc rect { opacity: 0.55; }\n"
		"]]></style>\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#f6f4ec\"/>\n",
		FG_WIDTH, height, FG_WIDTH, height, FG_WIDTH, height);
	fprintf(out, "<text id=\"title\" x=\"%d\" y=\"24\">", FG_WIDTH / 2);
	fg_put_text(out, fg->title, SIZE_MAX);
	fputs(": ", out);
	fputs(fg_fmt_count(fg->nodes[0].total, total), out);
	fputc(' ', out);
	fg_put_text(out, fg->unit, SIZE_MAX);
	fputs("</text>\n", out);
	fprintf(out, "<text id=\"reset\" class=\"ctl\" x=\"%d\" y=\"48\" style=\"display:none\">"
		"Reset zoom</text>\n", FG_PAD);
	fprintf(out, "<text id=\"search\" class=\"ctl\" x=\"%d\" y=\"48\" text-anchor=\"end\">"
		"Search</text>\n", FG_WIDTH - FG_PAD);
	fprintf(out, "<text id=\"info\" x=\"%d\" y=\"%d\"></text>\n", FG_PAD, height - 10);
	fprintf(out, "<text id=\"matched\" x=\"%d\" y=\"%d\" text-anchor=\"end\"></text>\n",
		FG_WIDTH - FG_PAD, height - 10);
}

static void fg_write_frame(const struct flamegraph *fg, const struct fg_layout *lay, FILE *out,
			   uint32_t idx, int height)
{
	const struct fg_node *n = &fg->nodes[idx];
	const char *name = strset_str(fg->names, n->name);
	double x = FG_PAD + (double)lay->offset[idx] * lay->scale;
	double w = (double)n->total * lay->scale;
	double pct = 100.0 * (double)n->total / (double)fg->nodes[0].total;
	int y = height - FG_BOTTOM - (int)(n->depth + 1) * FG_FRAME_H;
	long fit = (long)((w - 2 * FG_TEXT_PAD) / FG_CHAR_W);
	size_t chars = fg_utf8_count(name);
	unsigned rgb[3];
	char count[32];

	fg_colour(name, hash_fold32(strset_hash(fg->names, n->name)), rgb);
	fputs("<g class=\"f\"><title>", out);
	fg_put_text(out, name, SIZE_MAX);
	fprintf(out, " (%s ", fg_fmt_count(n->total, count));
	fg_put_text(out, fg->unit, SIZE_MAX);
	fprintf(out, ", %.2f%%)</title><rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\""
		" fill=\"rgb(%u,%u,%u)\"/>", pct, x, y, w, FG_FRAME_H - 1, rgb[0], rgb[1], rgb[2]);
	if (fit >= 3 || (fit > 0 && chars <= (size_t)fit)) {
		fprintf(out, "<text x=\"%.2f\" y=\"%.1f\">", x + FG_TEXT_PAD, y + FG_TEXT_DY);
		if (chars <= (size_t)fit) {
			fg_put_text(out, name, SIZE_MAX);
		} else {
			fg_put_text(out, name, (size_t)fit - 2);
			fputs("..", out);
		}
		fputs("</text>", out);
	}
	fputs("</g>\n", out);
}

int flamegraph_write(const struct flamegraph *fg, FILE *out)
{
	struct fg_layout lay = { 0 };
	int height, err;
	uint32_t i;

	if (!fg || !out)
		return -EINVAL;

	if (fg->nodes[0].total) {
		err = fg_layout(fg, &lay);
		if (err)
			goto cleanup;
		height = FG_TOP + (int)(lay.max_depth + 1) * FG_FRAME_H + FG_BOTTOM;
	} else {
		height = FG_TOP + 3 * FG_FRAME_H + FG_BOTTOM;
	}

	fg_write_head(fg, out, height);
	if (!lay.nr_drawn)
		fprintf(out, "<text id=\"nodata\" x=\"%d\" y=\"%d\">no samples</text>\n",
			FG_WIDTH / 2, FG_TOP + 2 * FG_FRAME_H);
	for (i = 0; i < lay.nr_drawn; i++)
		fg_write_frame(fg, &lay, out, lay.drawn[i], height);
	fputs("<script type=\"text/ecmascript\"><![CDATA[\n", out);
	fputs(fg_script, out);
	fputs("]]></script>\n</svg>\n", out);

	err = 0;
	if (fflush(out) || ferror(out))
		err = -EIO;
cleanup:
	fg_layout_fini(&lay);
	return err;
}

int flamegraph_write_file(const struct flamegraph *fg, const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int err;

	if (!fg || !path)
		return -EINVAL;
	/* Rendered in memory, then written by the one atomic writer (fileio). */
	f = open_memstream(&buf, &len);
	if (!f)
		return -errno;
	err = flamegraph_write(fg, f);
	if (fclose(f) && !err)
		err = -ENOMEM;
	if (!err)
		err = fileio_write_atomic(path, buf, len);
	free(buf);
	return err;
}
