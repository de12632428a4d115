"""Sets up a proxy system (xsuaa) in front of the UAA simulator on a running service, sends 300 unmeasured
GETs by id, then REQUESTS measured ones between callgrind's instrumentation on and off, and dumps.

    drive.py PORT SIM_TXT REQUESTS SERVICE_PID   (from instructions-per-get.sh)

With PROFILE_WHAT=page the requests are 100-user pages (`GET /Users?startIndex=…&count=100`) instead.
"""
import base64
import http.client
import json
import os
import subprocess
import sys

port, sim_txt, requests, service = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
# The simulator prints `  Name (what) = value` lines: the URLs and the OAuth client.
sim = {}
for line in open(sim_txt):
    if "=" in line:
        key, value = line.split("=", 1)
        sim[key.split()[0]] = value.strip()

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)


def call(method, path, body=None, user=("admin", "bench-password-1")):
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status >= 300:
        sys.exit(f"{method} {path}: {answer.status} {data[:300]!r}")
    return json.loads(data) if data else None


system = call("POST", "/api/v1/systems", {
    "name": "uaa-proxy", "type": "xsuaa", "role": "proxy",
    "properties": {"URL": sim["URL"], "OAuth2TokenServiceURL": sim["OAuth2TokenServiceURL"],
                   "User": sim["User"], "Password": sim["Password"], "provisio.rate.limit": "1000000"}})
call("POST", "/api/v1/technical-users",
     {"name": "idm-client", "password": "idm-client-secret-1", "permissions": ["proxy-api"]})
client = ("idm-client", "idm-client-secret-1")
base = f"/ipsproxy/api/v1/scim/{system['id']}/Users"
ids = [u["id"] for u in call("GET", f"{base}?count=100", user=client)["Resources"]]
if os.environ.get("PROFILE_WHAT", "get") == "page":
    def path(i):
        return f"{base}?startIndex={1 + (i % 2) * 100}&count=100"
else:
    def path(i):
        return f"{base}/{ids[i % len(ids)]}"
for i in range(300):
    call("GET", path(i), user=client)
subprocess.run(["callgrind_control", "--instr=on", service], check=True, capture_output=True)
for i in range(requests):
    call("GET", path(i), user=client)
subprocess.run(["callgrind_control", "--instr=off", service], check=True, capture_output=True)
subprocess.run(["callgrind_control", "--dump", service], check=True, capture_output=True)
