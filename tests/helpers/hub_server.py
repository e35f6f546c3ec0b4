"""A loopback stand-in for the Hugging Face Hub, enough for huggingface_hub 2.4's own client.

It serves, for dataset repos held in memory:

* ``GET /api/datasets/{repo}/revision/{rev}``: repo info (``id``, ``sha``, ``siblings``);
* ``GET /api/datasets/{repo}/tree/{rev}[/{path}]``: the recursive file listing;
* ``HEAD``/``GET /datasets/{repo}/resolve/{rev}/{path}``: file metadata (``X-Repo-Commit``,
  ``ETag``, ``Content-Length``) and content, with ``Range`` support (206) for resumed downloads;
* ``POST /api/repos/create``, ``POST /api/validate-yaml``;
* ``POST /api/datasets/{repo}/preupload/{rev}``: every file in ``regular`` upload mode, so the
  client sends contents inline in the commit (no LFS or xet storage is needed);
* ``POST /api/datasets/{repo}/commit/{rev}``: the ndjson commit (``header``, ``file``).

Fault injection for tests: ``corrupt`` (paths served with one byte flipped), ``drop_once``
(paths whose first GET closes the connection halfway through the body), ``html`` (paths
answered with an HTML page, as a captive portal or a misconfigured proxy would). Every request is
logged in ``requests`` as ``(method, path, range header)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from huggingface_hub import constants

_API = re.compile(
    r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree|preupload|commit)/(?P<rest>.*)$"
)
_RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
TOKEN = "hf_loopback_token"
_HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"


@dataclass
class Repo:
    """One dataset repo: commits as full file trees, and branch refs."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    private: bool = False

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


class FakeHub:
    """State of the fake hub, shared by the request handler threads."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.corrupt: set[str] = set()
        self.drop_once: set[str] = set()
        self.html: set[str] = set()
        self.lock = threading.Lock()
        self.url = ""

    def reset(self) -> None:
        """Forget every repo, request and fault (between tests sharing one server)."""
        with self.lock:
            self.repos.clear()
            self.requests.clear()
            self.corrupt.clear()
            self.drop_once.clear()
            self.html.clear()

    # -- state the tests set and read ---------------------------------------------------------

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit on top of ``branch`` holding ``files`` (added or replaced)."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            tree = dict(repo.commits.get(repo.refs.get(branch, ""), {}))
            tree.update(files)
            digest = hashlib.sha1(repr(len(repo.commits)).encode())
            for path in sorted(tree):
                digest.update(path.encode() + hashlib.sha256(tree[path]).digest())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        """The file tree of a revision."""
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(rev)]

    def count(self, method: str, suffix: str) -> int:
        """Requests with ``method`` whose path ends with ``suffix``."""
        return sum(1 for m, p, _ in self.requests if m == method and p.endswith(suffix))


def _etag(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send_json(status, {"error": message}, headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _log(self) -> str:
        path = urlsplit(self.path).path
        with self.hub.lock:
            self.hub.requests.append((self.command, unquote(path), self.headers.get("Range")))
        return path

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    # -- reads ----------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._resolve(self._log())

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self._log()
        if match := _RESOLVE.match(path):
            return self._resolve(path, match)
        match = _API.match(path)
        if not match or match["kind"] not in ("revision", "tree"):
            return self._error(404, "NotFound", f"no route {path}")
        repo = self._repo(match["repo"])
        if repo is None:
            return None
        rev, _, sub = match["rest"].partition("/")
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        tree = repo.commits[sha]
        if match["kind"] == "revision":
            return self._send_json(
                200,
                {
                    "id": match["repo"],
                    "sha": sha,
                    "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(tree)],
                },
            )
        prefix = unquote(sub).strip("/")
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for file in sorted(tree):
            if prefix and not file.startswith(prefix + "/"):
                continue
            parts = file.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            content = tree[file]
            entries.append(
                {
                    "type": "file",
                    "path": file,
                    "size": len(content),
                    "oid": hashlib.sha1(content).hexdigest(),
                }
            )
        entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in sorted(dirs)]
        return self._send_json(200, entries)

    def _resolve(self, path: str, match: re.Match[str] | None = None) -> None:
        match = match or _RESOLVE.match(path)
        if match is None:
            return self._error(404, "NotFound", f"no route {path}")
        repo = self._repo(match["repo"])
        if repo is None:
            return None
        sha = repo.resolve(match["rev"])
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
        file = unquote(match["path"])
        content = repo.commits[sha].get(file)
        if content is None:
            return self._error(404, "EntryNotFound", f"{file} does not exist", commit=sha)
        etag = f'"{_etag(content)}"'
        if file in self.hub.corrupt:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        start = 0
        ranged = self.headers.get("Range")
        if ranged and (m := re.fullmatch(r"bytes=(\d+)-", ranged.strip())):
            start = int(m.group(1))
        body = content[start:]
        if file in self.hub.html and self.command == "GET":
            # A proxy that passes the metadata through but answers the download with a page.
            self.send_response(200)
            self.send_header("X-Repo-Commit", sha)
            self.send_header("ETag", etag)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(_HTML_PAGE)))
            self.end_headers()
            self.wfile.write(_HTML_PAGE)
            return None
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.end_headers()
        if self.command == "HEAD":
            return None
        with self.hub.lock:
            drop = file in self.hub.drop_once
            self.hub.drop_once.discard(file)
        if drop:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return None
        self.wfile.write(body)
        return None

    # -- writes ---------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = self._log()
        body = self._body()
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        if path == "/api/validate-yaml":
            return self._send_json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            if repo_id in self.hub.repos:
                return self._error(409, "Conflict", "You already created this dataset repo")
            with self.hub.lock:
                self.hub.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
            return self._send_json(200, {"url": f"{self.hub.url}/datasets/{repo_id}"})
        match = _API.match(path)
        if not match or match["kind"] not in ("preupload", "commit"):
            return self._error(404, "NotFound", f"no route {path}")
        if self._repo(match["repo"]) is None:
            return None
        if match["kind"] == "preupload":
            files = json.loads(body)["files"]
            return self._send_json(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                },
            )
        added: dict[str, bytes] = {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                added[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] != "header":
                return self._error(400, "BadRequest", f"unsupported commit item {item['key']}")
        branch = unquote(match["rest"])
        sha = self.hub.commit(match["repo"], added, branch=branch)
        return self._send_json(
            200,
            {
                "commitUrl": f"{self.hub.url}/datasets/{match['repo']}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FakeHub


class LoopbackHub:
    """Context manager running :class:`FakeHub` on ``127.0.0.1`` on an ephemeral port."""

    def __init__(self) -> None:
        self.hub = FakeHub()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self.hub
        host, port = self._server.server_address[:2]
        self.hub.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self.hub

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def point_client_at(url: str, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point huggingface_hub at the hub at ``url``: its token, an empty ``home``, online.

    huggingface_hub reads the endpoint and home again at call time, so the environment is
    enough; the constant is patched too so that the client's own offline switch starts off.
    """
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
