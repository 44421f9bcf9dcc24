# perf script output -> folded stacks, one line per distinct stack:
#   comm;outermost;...;innermost COUNT
# the input format of flamegraph.py (next to this file), flamegraph.pl,
# inferno and speedscope.
#
#   perf script -i perf.data | awk -f stackfold.awk > out.folded
#
# A sample is a header line (comm pid [cpu] time: period event:) followed by
# one line per frame, innermost first, and a blank line.
/^[^ \t]/ { comm = $1; stack = ""; next }
/^[ \t]*$/ { if (stack != "") n[comm ";" stack]++; stack = ""; next }
{
    sym = $2
    sub(/\+0x[0-9a-f]+$/, "", sym)
    if (sym == "[unknown]") sym = $1
    stack = (stack == "" ? sym : sym ";" stack)
}
END {
    if (stack != "") n[comm ";" stack]++
    for (k in n) print k, n[k]
}
