"""Measures one proxy, then the other (see cpu-per-request.sh):

    cpu_per_request.py PORT SIM_TXT REQUESTS SERVICE_PID NGINX_PORT NGINX_WORKER_PIDS

With PROFILE_CONNECTIONS=N (over 1) the load comes from wrk on N connections for PROFILE_SECONDS (default 5)
instead of one request at a time, and the wall column is requests per second.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from proxy_setup import ADMIN, CLIENT, TECHNICAL_USER, basic, request_path, simulator, xsuaa_system

port, sim_txt, REQUESTS, service = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
nginx_port, nginx_workers = int(sys.argv[5]), sys.argv[6]
sim = simulator(sim_txt)


def get(conn, path, authorization):
    conn.request("GET", path, headers={"Authorization": authorization})
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200:
        sys.exit(f"GET {path}: {answer.status} {body[:300]!r}")
    return body


service_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
admin = basic(ADMIN)


def admin_post(path, body):
    service_conn.request("POST", path, body=json.dumps(body),
                         headers={"Authorization": admin, "Content-Type": "application/json"})
    answer = service_conn.getresponse()
    data = answer.read()
    if answer.status >= 300:
        sys.exit(f"POST {path}: {answer.status} {data[:300]!r}")
    return json.loads(data)


system = admin_post("/api/v1/systems", xsuaa_system(sim))
admin_post("/api/v1/technical-users", TECHNICAL_USER)
client = basic(CLIENT)
base = f"/ipsproxy/api/v1/scim/{system['id']}"
ids = [u["id"] for u in json.loads(get(service_conn, f"{base}/Users?count=100", client))["Resources"]]
token_request = urllib.request.Request(
    sim["OAuth2TokenServiceURL"], data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
    headers={"Authorization": basic((sim["User"], sim["Password"]))})
bearer = "Bearer " + json.loads(urllib.request.urlopen(token_request).read())["access_token"]

path = request_path(ids)


def cpu_ticks(pids):
    """User and kernel clock ticks of every thread of `pids` so far."""
    user = kernel = 0
    for pid in pids.split(","):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            user += int(fields[11])
            kernel += int(fields[12])
    return user, kernel


CONNECTIONS = int(os.environ.get("PROFILE_CONNECTIONS", "1"))
SECONDS = float(os.environ.get("PROFILE_SECONDS", "5"))


def wrk(url, authorization):
    """Load from wrk (one thread, CONNECTIONS connections, SECONDS); answers the requests it completed."""
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS:g}s", "-H", f"Authorization: {authorization}",
                          url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk against {url} saw failures:\n{out}")
    return int(next(line for line in out.splitlines() if " requests in " in line).split()[0])


def measure(label, pids, send, load):
    for i in range(300):
        send(i)
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches,cpu-migrations,page-faults", "-p", pids],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    user0, kernel0 = cpu_ticks(pids)
    started = time.perf_counter()
    if CONNECTIONS > 1:
        requests = load()
    else:
        requests = REQUESTS
        for i in range(requests):
            send(i)
    elapsed = time.perf_counter() - started
    user1, kernel1 = cpu_ticks(pids)
    perf.send_signal(signal.SIGINT)
    events = {}
    for line in perf.communicate()[1].splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].replace(".", "").isdigit():
            events[fields[2]] = float(fields[0])
    tick = 1e6 / os.sysconf("SC_CLK_TCK") / requests
    wall = f"{requests / elapsed:.0f}/s" if CONNECTIONS > 1 else f"{elapsed / requests * 1e6:.0f}"
    print(f"| {label} | {wall} | {(user1 - user0) * tick:.1f} | {(kernel1 - kernel0) * tick:.1f} "
          f"| {events.get('context-switches', 0) / requests:.2f} | {events.get('cpu-migrations', 0) / requests:.2f} "
          f"| {events.get('page-faults', 0) / requests:.2f} |")


what = "pages" if os.environ.get("PROFILE_WHAT") == "page" else "GETs by id"
if CONNECTIONS > 1:
    print(f"{what} from wrk on {CONNECTIONS} connections for {SECONDS:g} s; per request "
          "(the perf events include the 0.5 s before the first)")
    print("| proxy | requests/s | user CPU µs | kernel CPU µs | context switches | migrations | page faults |")
else:
    print(f"{REQUESTS} {what}, one at a time; per request (the perf events include the 0.5 s before the first)")
    print("| proxy | wall µs (client included) | user CPU µs | kernel CPU µs | context switches | migrations | page faults |")
print("|---|---|---|---|---|---|---|")
measure("provisio", service, lambda i: get(service_conn, base + path(i), client),
        lambda: wrk(f"http://127.0.0.1:{port}{base}{path(0)}", client))
nginx_conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=600)
measure("nginx", nginx_workers, lambda i: get(nginx_conn, path(i), bearer),
        lambda: wrk(f"http://127.0.0.1:{nginx_port}{path(0)}", bearer))
