#!/usr/bin/env python3
"""Folded stacks -> a flame graph as one self-contained SVG (no dependencies).

    perf script -i perf.data | awk -f stackfold.awk > out.folded
    python3 flamegraph.py out.folded > flame.svg          # open in a browser
    python3 flamegraph.py --top 25 out.folded             # text: inclusive/self %

Debian 12 packages no flame graph tool, hence this small one: frames are
boxes as wide as their share of samples, callers below callees; hover shows
the share.
"""
import html
import sys
from collections import Counter

WIDTH, ROW, MIN_PX = 1400, 16, 0.5


def load(path):
    stacks = Counter()
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def tree(stacks):
    root = {"n": 0, "kids": {}}
    for frames, c in stacks.items():
        node = root
        node["n"] += c
        for f in frames:
            node = node["kids"].setdefault(f, {"n": 0, "kids": {}})
            node["n"] += c
    return root


def depth(node):
    return 1 + max((depth(k) for k in node["kids"].values()), default=0)


def colour(name):
    h = sum(ord(ch) for ch in name)
    return "rgb(%d,%d,%d)" % (205 + h % 50, 80 + h % 120, 40 + h % 50)


def svg(root):
    total = root["n"] or 1
    rows = depth(root)
    height = rows * ROW + 40
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="monospace" font-size="11">' % (WIDTH, height),
           '<text x="4" y="14">%d samples; hover a frame for its share</text>' % total]

    def walk(node, name, x, level):
        w = node["n"] / total * WIDTH
        if w < MIN_PX:
            return
        y = height - (level + 1) * ROW
        if level >= 0:
            pct = 100.0 * node["n"] / total
            label = html.escape(name)
            out.append('<g><title>%s: %.2f%% (%d)</title><rect x="%.1f" y="%d" width="%.1f" '
                       'height="%d" fill="%s" stroke="white" stroke-width="0.5"/>'
                       % (label, pct, node["n"], x, y, w, ROW - 1, colour(name)))
            if w > 40:
                out.append('<text x="%.1f" y="%d">%s</text>'
                           % (x + 2, y + ROW - 4, label[: int(w / 7)]))
            out.append("</g>")
        for kid_name, kid in sorted(node["kids"].items()):
            walk(kid, kid_name, x, level + 1)
            x += kid["n"] / total * WIDTH

    walk(root, "all", 0.0, -1)
    out.append("</svg>")
    return "\n".join(out)


def top(stacks, n):
    total = sum(stacks.values()) or 1
    inclusive, own = Counter(), Counter()
    for frames, c in stacks.items():
        for f in set(frames[1:]):
            inclusive[f] += c
        own[frames[-1]] += c
    print("%d samples\n inclusive   self  function" % total)
    for f, c in inclusive.most_common(n):
        print("%9.1f%% %6.1f%%  %s" % (100.0 * c / total, 100.0 * own[f] / total, f))


def main(argv):
    if len(argv) == 4 and argv[1] == "--top":
        top(load(argv[3]), int(argv[2]))
    elif len(argv) == 2:
        sys.stdout.write(svg(tree(load(argv[1]))))
    else:
        sys.stderr.write("usage: flamegraph.py [--top N] FILE.folded\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
