"""The training run of a profile-guided build (scripts/build-pgo.sh): drives an instrumented `provisio serve`
through the work the service is measured on (docs/performance.md), so that the profile it writes on exit
says which paths are hot:

- a proxy system (xsuaa) in front of a UAA simulator: GETs by id one at a time and from 32 clients at once,
  and 100-user pages;
- a Read job from a UAA simulator into another one, run twice (the first creates every user, the second finds
  nothing changed).

    train.py PORT PROXY_SIM_TXT SOURCE_SIM_TXT TARGET_SIM_TXT
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "profile"))
from proxy_setup import ADMIN, CLIENT, TECHNICAL_USER, basic, simulator, xsuaa_system  # noqa: E402

port = int(sys.argv[1])
proxy_sim, source_sim, target_sim = (simulator(path) for path in sys.argv[2:5])
GETS = int(os.environ.get("PGO_GETS", "20000"))
PAGES = int(os.environ.get("PGO_PAGES", "2000"))


class Client:
    def __init__(self, user):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.authorization = basic(user)

    def call(self, method, path, body=None):
        headers = {"Authorization": self.authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status >= 300:
            sys.exit(f"{method} {path}: {answer.status} {data[:300]!r}")
        return json.loads(data) if data else None


def step(what):
    print(f"  {time.strftime('%H:%M:%S')} {what}", flush=True)


admin = Client(ADMIN)
system = admin.call("POST", "/api/v1/systems", xsuaa_system(proxy_sim))
admin.call("POST", "/api/v1/technical-users", TECHNICAL_USER)
base = f"/ipsproxy/api/v1/scim/{system['id']}"
proxy = Client(CLIENT)
ids = [u["id"] for u in proxy.call("GET", f"{base}/Users?count=100")["Resources"]]

step(f"{GETS} proxied GETs by id, one at a time")
for i in range(GETS):
    proxy.call("GET", f"{base}/Users/{ids[i % len(ids)]}")

step(f"{GETS} proxied GETs by id from 32 clients at once")


def client_loop(n):
    own = Client(CLIENT)
    for i in range(n):
        own.call("GET", f"{base}/Users/{ids[i % len(ids)]}")


threads = [threading.Thread(target=client_loop, args=(GETS // 32,)) for _ in range(32)]
for t in threads:
    t.start()
for t in threads:
    t.join()

step(f"{PAGES} proxied 100-user pages")
for i in range(PAGES):
    proxy.call("GET", f"{base}/Users?startIndex={1 + (i % 2) * 100}&count=100")


def uaa(sim, name, role, sources=()):
    body = xsuaa_system(sim, name, role)
    if sources:
        body["sources"] = list(sources)
    return admin.call("POST", "/api/v1/systems", body)["id"]


source = uaa(source_sim, "pgo-source", "source")
uaa(target_sim, "pgo-target", "target", [source])
for run in ("first", "unchanged"):
    step(f"a Read job ({run})")
    job = admin.call("POST", f"/api/v1/systems/{source}/jobs", {"type": "read"})
    while True:
        job = admin.call("GET", f"/api/v1/jobs/{job['id']}")
        if job.get("endedAt"):
            break
        time.sleep(0.2)
    if job["status"] != "Success":
        sys.exit(f"the {run} Read ended {job['status']}: {json.dumps(job)[:500]}")
step("done")
