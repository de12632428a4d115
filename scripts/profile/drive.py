"""Sets up a proxy system (xsuaa) in front of the UAA simulator on a running service, sends 300 unmeasured
GETs by id, then REQUESTS measured ones between callgrind's instrumentation on and off, and dumps.

    drive.py PORT SIM_TXT REQUESTS SERVICE_PID   (from instructions-per-get.sh)

With PROFILE_WHAT=page the requests are 100-user pages (`GET /Users?startIndex=…&count=100`) instead.
"""
import http.client
import json
import subprocess
import sys

from proxy_setup import ADMIN, CLIENT, TECHNICAL_USER, basic, request_path, simulator, xsuaa_system

port, sim_txt, requests, service = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
sim = simulator(sim_txt)

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)


def call(method, path, body=None, user=ADMIN):
    headers = {"Authorization": basic(user)}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status >= 300:
        sys.exit(f"{method} {path}: {answer.status} {data[:300]!r}")
    return json.loads(data) if data else None


system = call("POST", "/api/v1/systems", xsuaa_system(sim))
call("POST", "/api/v1/technical-users", TECHNICAL_USER)
client = CLIENT
base = f"/ipsproxy/api/v1/scim/{system['id']}"
ids = [u["id"] for u in call("GET", f"{base}/Users?count=100", user=client)["Resources"]]
relative = request_path(ids)


def path(i):
    return base + relative(i)


for i in range(300):
    call("GET", path(i), user=client)
subprocess.run(["callgrind_control", "--instr=on", service], check=True, capture_output=True)
for i in range(requests):
    call("GET", path(i), user=client)
subprocess.run(["callgrind_control", "--instr=off", service], check=True, capture_output=True)
subprocess.run(["callgrind_control", "--dump", service], check=True, capture_output=True)
