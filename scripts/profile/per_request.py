"""Instructions per request from a callgrind file: by crate (exclusive costs), and the connector's own
code by function through the engine's perf map (JIT code has no symbols callgrind can read).

    per_request.py CALLGRIND_FILE REQUESTS [PERF_MAP]
"""
import bisect
import re
import subprocess
import sys

path, requests = sys.argv[1], int(sys.argv[2])
perf_map = sys.argv[3] if len(sys.argv) > 3 else None
annotated = subprocess.run(["callgrind_annotate", "--threshold=100", path],
                           capture_output=True, text=True, check=True).stdout
LINE = re.compile(r"\s*([\d,]+) \([ \d.%]+\)\s+(.*)$")
# First match wins: the order matters (the binary's path names every function of ours, e.g.).
BUCKETS = [
    ("the connector (guest code)", r"\[\?\?\?\]$"),
    ("sqlite (background)", r"sqlite|rusqlite|yy_reduce|[Vv]dbe|[Bb]tree|[Pp]ager|[Ww]here|Expr|Select|Resolve|Prepare|Token|Walk"),
    ("memcpy/memmove/memcmp", r"memcpy|memmove|memset|memcmp"),
    ("allocator", r"\bmi_|_mi_|malloc|free\b|__rust_alloc|__rust_dealloc|__rust_realloc|realloc"),
    ("sha256", r"sha2::"),
    ("wasmtime (host side)", r"wasmtime"),
    ("hyper / hyper_util / httparse", r"hyper|httparse"),
    ("axum / tower / matchit", r"axum|tower|matchit"),
    ("tokio", r"tokio"),
    ("hashing and hash maps", r"sip::|hash_one|BuildHasher|hashbrown"),
    ("http crate", r"\bhttp::"),
    ("url / percent-encoding", r"url::|percent_encoding"),
    ("fmt", r"core::fmt|alloc::fmt"),
    ("provisio", r"provisio_|provisio::"),
]
buckets, guest, total = {}, [], 0
for line in annotated.splitlines():
    m = LINE.match(line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    cost, name = int(m.group(1).replace(",", "")), m.group(2)
    total += cost
    label = next((b for b, pattern in BUCKETS if re.search(pattern, name)), "other (core, std, libc)")
    buckets[label] = buckets.get(label, 0) + cost
    if label == BUCKETS[0][0]:
        address = re.search(r"0x([0-9a-f]+)", name)
        if address:
            guest.append((int(address.group(1), 16), cost))
background = buckets.get("sqlite (background)", 0)
print(f"instructions per proxied GET: {(total - background) / requests:,.0f} "
      f"({requests} GETs; {background / requests:,.0f} more of background work in the window)")
print("| where | per GET | share |\n|---|---|---|")
for label, cost in sorted(buckets.items(), key=lambda kv: -kv[1]):
    if label != "sqlite (background)":
        print(f"| {label} | {cost / requests:,.0f} | {100 * cost / (total - background):.1f} % |")
if perf_map and guest:
    ranges = sorted((int(a, 16), int(s, 16), n.strip())
                    for a, s, n in (l.split(" ", 2) for l in open(perf_map) if l.count(" ") >= 2))
    starts = [r[0] for r in ranges]
    by_function = {}
    for address, cost in guest:
        i = bisect.bisect_right(starts, address) - 1
        name = ranges[i][2] if i >= 0 and address < ranges[i][0] + ranges[i][1] else "(unmapped)"
        by_function[name] = by_function.get(name, 0) + cost
    print("\nthe connector's code, by function (per GET):")
    for name, cost in sorted(by_function.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{cost / requests:9,.0f}  {name[:140]}")
