"""What the profile scripts and the PGO training run share: the simulator's settings, the systems and the client
they measure, Basic credentials, and the paths they request (relative to the proxy's SCIM base, which nginx's
`proxy_pass` serves as the simulator's root).
"""
import base64
import os


def simulator(sim_txt):
    """The simulator's printed `  Name (what) = value` lines: its URLs and OAuth client."""
    sim = {}
    for line in open(sim_txt):
        if "=" in line:
            key, value = line.split("=", 1)
            sim[key.split()[0]] = value.strip()
    return sim


def xsuaa_system(sim, name="uaa-proxy", role="proxy"):
    """An xsuaa system on the simulator (by default the proxy system measured), without a rate limit to speak of."""
    return {"name": name, "type": "xsuaa", "role": role,
            "properties": {"URL": sim["URL"], "OAuth2TokenServiceURL": sim["OAuth2TokenServiceURL"],
                           "User": sim["User"], "Password": sim["Password"], "provisio.rate.limit": "1000000"}}


# The admin the calling script bootstrapped the service with (`name:password`, as the service reads it).
ADMIN = tuple(os.environ["PROVISIO_BOOTSTRAP_ADMIN"].split(":", 1))

def basic(user):
    """The `Authorization` value of HTTP Basic for a `(name, password)` pair."""
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


# The technical user that calls the proxy.
CLIENT = ("idm-client", "idm-client-secret-1")
TECHNICAL_USER = {"name": CLIENT[0], "password": CLIENT[1], "permissions": ["proxy-api"]}


def request_path(ids):
    """The i-th request's path: a GET by id, or with PROFILE_WHAT=page a 100-user page."""
    if os.environ.get("PROFILE_WHAT", "get") == "page":
        return lambda i: f"/Users?startIndex={1 + (i % 2) * 100}&count=100"
    return lambda i: f"/Users/{ids[i % len(ids)]}"
