#!/usr/bin/env python3
"""faultline-bench's JSON, drawn and compared (run as `faultline-bench plot`
and `faultline-bench compare`, which exec this script).

  plot RESULT.json OUTDIR [--format svg|png]
      One figure per workload, OUTDIR/WORKLOAD.FORMAT: the latency CDF of
      each case, faultline (solid) beside its baseline (dashed, same colour),
      and the throughput of both as bars; and OUTDIR/ratios.FORMAT, each
      case's faultline/baseline ratio of p50 latency and throughput.
      Needs matplotlib (Debian: python3-matplotlib); exit 77 without it.

  compare OLD.json NEW.json [--threshold PERCENT]
      NEW/OLD of each case's p50, p99 and throughput (faultline's) and of
      each further number ("extra"), flagged where it moved beyond the
      run-to-run range. The JSON has no range of its own (each run is one
      sample), so the range is taken from the run itself: the baseline ran in
      the same two runs with unchanged code, so how far ITS number moved is
      how far the machine and the run moved. A faultline number is flagged
      when its NEW/OLD lies outside the band from 1 (no change) to the
      baseline's NEW/OLD (the machine's change), widened by PERCENT (default
      10) on both sides, twice that for p99 (a tail moves more between
      runs): "worse" (slower, less throughput) or "better". Extras have no
      baseline: they are flagged "moved" beyond twice PERCENT. Exit 0, 1 when
      a case got worse, 2 on a wrong command line or unreadable JSON.
"""

import json
import math
import os
import sys


def die(msg, code=2):
    print("faultline-bench: " + msg, file=sys.stderr)
    sys.exit(code)


def load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        die("cannot read %s: %s" % (path, e))
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        die("%s is not faultline-bench --json output (no \"results\")" % path)
    return doc


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def cases(doc):
    """The rows with faultline and its baseline side by side, in order."""
    return [r for r in doc["results"] if "case" in r and "faultline" in r and "baseline" in r]


def extras(doc):
    return [r for r in doc["results"] if "extra" in r]


def describe(doc):
    return "%s (%s, %s build), kernel %s, %s CPUs, load %s, %s mode%s" % (
        doc.get("version", "?"), doc.get("commit", "?"), doc.get("build_type", "?"),
        doc.get("kernel", "?"), doc.get("cpus", "?"), doc.get("load1", "?"),
        "quick" if doc.get("quick") else "full",
        ", %d runs per workload (the last run's rows compared)" % doc["repeat"]
        if (doc.get("repeat") or 1) > 1 else "")


# ---- plot ----

def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        # Debian's package lives in the system python3's path: a python3 of
        # its own earlier in $PATH (pyenv, a venv) does not see it.
        system = "/usr/bin/python3"
        if (os.path.realpath(sys.executable) != os.path.realpath(system) and os.access(system, os.X_OK)
                and not os.environ.get("FAULTLINE_BENCH_REEXEC")):
            os.environ["FAULTLINE_BENCH_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        die("plot needs matplotlib (Debian: apt-get install python3-matplotlib)", 77)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def split_args(args, option, value, convert):
    """option's value (value when it is not given, else convert of its
    argument) and the other arguments; None once -h or --help printed the
    help."""
    rest = []
    i = 0
    while i < len(args):
        if args[i] == option and i + 1 < len(args):
            value = convert(args[i + 1])
            i += 2
        elif args[i] in ("-h", "--help"):
            print(__doc__)
            return None
        else:
            rest.append(args[i])
            i += 1
    return value, rest


def plot(args):
    parsed = split_args(args, "--format", "svg", str)
    if parsed is None:
        return 0
    fmt, rest = parsed
    if len(rest) != 2 or fmt not in ("svg", "png"):
        die("usage: faultline-bench plot RESULT.json OUTDIR [--format svg|png]")
    doc = load(rest[0])
    outdir = rest[1]
    plt = import_pyplot()
    os.makedirs(outdir, exist_ok=True)
    rows = cases(doc)
    if not rows:
        die("%s has no case to plot" % rest[0], 1)
    workloads = []
    for r in rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    written = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for w in workloads:
        mine = [r for r in rows if r["workload"] == w]
        fig, (cdf, bars) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
        fig.suptitle("%s  (%s)" % (w, describe(doc)), fontsize=9)
        drew = False
        for k, r in enumerate(mine):
            c = colours[k % len(colours)]
            for side, style in (("faultline", "-"), ("baseline", "--")):
                pts = [(num(v), p) for p, v in r[side].get("cdf_us") or [] if num(v) is not None]
                pts = [(v, p) for v, p in pts if v > 0]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                cdf.step(xs, ys, where="post", linestyle=style, color=c,
                         label="%s: %s" % (r["case"].strip(), side))
                drew = True
        if drew:
            cdf.set_xscale("log")
        cdf.set_xlabel("latency (us, log scale)")
        cdf.set_ylabel("fraction of operations at or below")
        cdf.set_ylim(0, 1.01)
        cdf.grid(True, which="both", alpha=0.3)
        cdf.set_title("latency CDF: faultline solid, baseline dashed", fontsize=10)
        if drew:
            cdf.legend(fontsize=7, loc="lower right")
        else:
            cdf.text(0.5, 0.5, "no latency distribution in the JSON", ha="center",
                     transform=cdf.transAxes)
        labels, fl, base = [], [], []
        for r in mine:
            f, b = num(r["faultline"].get("throughput")), num(r["baseline"].get("throughput"))
            if f is None and b is None:
                continue
            labels.append("%s\n(%s)" % (r["case"].strip(), r.get("unit", "")))
            fl.append(f or 0)
            base.append(b or 0)
        if labels:
            xs = range(len(labels))
            width = 0.38
            bars.bar([x - width / 2 for x in xs], fl, width, label="faultline", color=colours[0])
            bars.bar([x + width / 2 for x in xs], base, width, label="baseline", color=colours[1])
            bars.set_xticks(list(xs))
            bars.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
            positive = [v for v in fl + base if v > 0]
            if positive and max(positive) / min(positive) > 100:
                bars.set_yscale("log")
            bars.set_ylabel("throughput (higher is better)")
            bars.legend(fontsize=8)
        else:
            bars.text(0.5, 0.5, "no throughput", ha="center", transform=bars.transAxes)
        bars.set_title("throughput", fontsize=10)
        fig.tight_layout()
        path = os.path.join(outdir, "%s.%s" % (w, fmt))
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    # All cases at once: faultline / baseline.
    names = ["%s: %s" % (r["workload"], r["case"].strip()) for r in rows]
    lat = [num(r.get("ratio", {}).get("p50")) for r in rows]
    thr = [num(r.get("ratio", {}).get("throughput")) for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [v or 0 for v in lat], 0.4, label="p50 latency")
    ax.barh([y + 0.2 for y in ys], [v or 0 for v in thr], 0.4, label="throughput")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    positive = [v for v in lat + thr if v]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("faultline / baseline (1: the same)")
    ax.set_title(describe(doc), fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(outdir, "ratios.%s" % fmt)
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    for p in written:
        print(p)
    return 0


# ---- compare ----

# Each number of a case: whether lower is better, and its tolerance in
# units of --threshold.
NUMBERS = {"p50_us": (True, 1), "p99_us": (True, 2), "throughput": (False, 1)}


def band(base_ratio, tol):
    """The run-to-run range of NEW/OLD: from 1 to the baseline's NEW/OLD,
    widened by tol on both sides."""
    lo, hi = 1.0, 1.0
    if base_ratio is not None and base_ratio > 0:
        lo, hi = min(1.0, base_ratio), max(1.0, base_ratio)
    return lo / (1 + tol), hi * (1 + tol)


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3g" % v


def threshold(arg):
    try:
        tol = float(arg.rstrip("%")) / 100
    except ValueError:
        die("--threshold wants a percentage, not '%s'" % arg)
    if not 0 <= tol < 10:
        die("--threshold wants 0 to 1000 (percent)")
    return tol


def compare(args):
    parsed = split_args(args, "--threshold", 0.10, threshold)
    if parsed is None:
        return 0
    tol, rest = parsed
    if len(rest) != 2:
        die("usage: faultline-bench compare OLD.json NEW.json [--threshold PERCENT]")
    old, new = load(rest[0]), load(rest[1])
    print("old: %s: %s" % (rest[0], describe(old)))
    print("new: %s: %s" % (rest[1], describe(new)))
    if bool(old.get("quick")) != bool(new.get("quick")):
        print("note: one run is --quick, the other is not: their cases differ in size")
    print("run-to-run range: from 1 to the baseline's new/old, widened by %g%% (p99 and extras: "
          "%g%%)" % (tol * 100, 2 * tol * 100))
    print()
    head = "%-10s %-30s %-10s %12s %12s %8s %9s  %s" % (
        "workload", "case", "number", "old", "new", "new/old", "baseline", "")
    print(head)
    print("-" * len(head))
    oc = {(r["workload"], r["case"]): r for r in cases(old)}
    nc = {(r["workload"], r["case"]): r for r in cases(new)}
    flagged = worse = compared = 0
    for key in [k for k in nc if k in oc]:
        o, n = oc[key], nc[key]
        for metric, (lower, scale) in NUMBERS.items():
            ov, nv = num(o["faultline"].get(metric)), num(n["faultline"].get(metric))
            ob, nb = num(o["baseline"].get(metric)), num(n["baseline"].get(metric))
            if ov is None or nv is None or ov <= 0:
                continue
            compared += 1
            r = nv / ov
            b = nb / ob if nb is not None and ob else None
            lo, hi = band(b, tol * scale)
            flag = ""
            if r < lo or r > hi:
                flagged += 1
                bad = (r > hi) if lower else (r < lo)
                worse += bad
                flag = "WORSE" if bad else "better"
            print("%-10s %-30s %-10s %12s %12s %8.2f %9s  %s" % (
                key[0], key[1].strip()[:30], metric, fmt(ov), fmt(nv), r,
                "%.2f" % b if b is not None else "-", flag))
    oe = {(r["workload"], r["extra"]): r for r in extras(old)}
    ne = {(r["workload"], r["extra"]): r for r in extras(new)}
    moved = 0
    for key in [k for k in ne if k in oe]:
        ov, nv = num(oe[key].get("value")), num(ne[key].get("value"))
        if ov is None or nv is None or ov == 0:
            continue
        compared += 1
        r = nv / ov
        flag = ""
        if r < 1 / (1 + 2 * tol) or r > 1 + 2 * tol:
            moved += 1
            flag = "moved"
        print("%-10s %-41s %12s %12s %8.2f %9s  %s" % (
            key[0], key[1][:41], fmt(ov), fmt(nv), r, "-", flag))
    for label, a, b in (("OLD", oc, nc), ("NEW", nc, oc)):
        for key in a:
            if key not in b:
                print("%-10s %-30s only in %s" % (key[0], key[1].strip()[:30], label))
    print()
    print("compare: %d numbers, %d cases' numbers beyond the run-to-run range (%d worse), "
          "%d extras moved" % (compared, flagged, worse, moved))
    return 1 if worse else 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "plot":
        return plot(args)
    if cmd == "compare":
        return compare(args)
    die("unknown command '%s' (plot or compare)" % cmd)


if __name__ == "__main__":
    sys.exit(main())
