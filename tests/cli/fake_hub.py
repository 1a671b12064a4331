#!/usr/bin/env python3
"""A small stand-in for the Hugging Face hub, for `cellm pull` tests (never the network).

    fake_hub.py REPOS_DIR PORT_FILE LOG_FILE

REPOS_DIR/ORG/NAME/ holds a repository's files. Answers, as the hub does:
  GET /api/models/ORG/NAME/revision/REV?blobs=true   {"sha", "siblings": [{rfilename, size,
                                                      blobId, lfs: {sha256, size}}]}
  GET /ORG/NAME/resolve/COMMIT/FILE                  the file (HTTP Range honoured)
Behaviour per repository, from REPOS_DIR/ORG/NAME/.hub.json (optional):
  "gated": true        resolve answers 401 with the hub's X-Error-Message unless the
                       request carries "Authorization: Bearer <token>"
  "token": "..."       the token that opens a gated repository
  "cut": {"FILE": N}   the first request for FILE sends N bytes and drops the connection
  "lie_sha": ["FILE"]  report a wrong sha256 for FILE
Files of more than 64 bytes are reported as LFS files (sha256), the others as git blobs.
Every request is appended to LOG_FILE as "METHOD PATH RANGE AUTH".
"""
import hashlib
import http.server
import json
import os
import sys
import threading

root, port_file, log_file = sys.argv[1:4]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
cut_done = set()
lock = threading.Lock()


def conf(repo):
    p = os.path.join(root, repo, ".hub.json")
    return json.load(open(p)) if os.path.exists(p) else {}


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock, open(log_file, "a") as f:
            f.write("GET %s %s %s\n" % (self.path, self.headers.get("Range", "-"),
                                         self.headers.get("Authorization", "-")))
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            repo = "/".join(parts[2:4])
            d = os.path.join(root, repo)
            if not os.path.isdir(d):
                return self.reply(404, json.dumps({"error": "Repository not found"}).encode(),
                                  [("X-Error-Message", "Repository not found"),
                                   ("Content-Type", "application/json")])
            c = conf(repo)
            sibs = []
            for name in sorted(os.listdir(d)):
                if name.startswith("."):
                    continue
                data = open(os.path.join(d, name), "rb").read()
                s = {"rfilename": name, "size": len(data),
                     "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                if len(data) > 64:
                    sha = hashlib.sha256(data).hexdigest()
                    if name in c.get("lie_sha", []):
                        sha = "0" * 64
                    s["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
                sibs.append(s)
            body = json.dumps({"id": repo, "sha": COMMIT, "siblings": sibs}).encode()
            return self.reply(200, body, [("Content-Type", "application/json")])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            c = conf(repo)
            if c.get("gated") and self.headers.get("Authorization") != "Bearer %s" % c.get("token"):
                msg = ("Access to model %s is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in." % repo)
                return self.reply(401, json.dumps({"error": msg}).encode(),
                                  [("X-Error-Message", msg), ("X-Error-Code", "GatedRepo"),
                                   ("Content-Type", "application/json")])
            p = os.path.join(root, repo, name)
            if not os.path.isfile(p):
                return self.reply(404, b'{"error": "Entry not found"}',
                                  [("X-Error-Message", "Entry not found")])
            data = open(p, "rb").read()
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    return self.reply(416, b"", [("Content-Range", "bytes */%d" % len(data))])
            cut = c.get("cut", {}).get(name)
            with lock:
                first = cut is not None and name not in cut_done
                cut_done.add(name)
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
            self.end_headers()
            if first:  # an interrupted transfer: part of the body, then the connection drops
                self.wfile.write(data[start:start + cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])
            return
        self.reply(404, b'{"error": "not found"}')


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
