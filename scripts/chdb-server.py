#!/usr/bin/env python3
"""A current ClickHouse engine on loopback, for the tests: ClickHouse's HTTP interface in
front of chdb (PyPI `chdb-core`, ClickHouse's engine as a library), single node.

Started like a server (the ClickHouse drill finds it as `clickhouse-server`):

    chdb-server.py --config-file=CONFIG.xml     # <path>, <http_port>, <listen_host>
    chdb-server.py --path DIR --port PORT

What it serves, as ClickHouse does: `GET /ping` answers `Ok.`; a query is the POST body
(or `?query=`), the other URL parameters are settings for that query (those of the HTTP
interface itself, `query_id`, `wait_end_of_query`, ..., are not); the answer is
TabSeparated unless the query names a FORMAT; an error is HTTP 500 with ClickHouse's own
message (`Code: 60. DB::Exception: ...`). Queries run one at a time (one engine session,
which is not thread-safe); the listener accepts connections meanwhile. The data directory
is the engine's `<path>`: Atomic databases, tables under `store/` by UUID, `shadow/` for
FREEZE, as in a server of the same version.

Not a server for anything but tests: no users, no TLS, loopback only.
"""

import argparse
import os
import signal
import sys
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Parameters of the HTTP interface, not settings of a query.
NOT_SETTINGS = {
    "query",
    "query_id",
    "database",
    "default_format",
    "user",
    "password",
    "wait_end_of_query",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
}

# The largest query body read.
BODY_LIMIT = 64 << 20


def options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", "--config", dest="config")
    parser.add_argument("--path")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args, _ = parser.parse_known_args()
    if args.config:
        root = ET.parse(args.config).getroot()
        args.path = args.path or (root.findtext("path") or "").strip()
        args.port = args.port or int((root.findtext("http_port") or "8123").strip())
        args.host = (root.findtext("listen_host") or args.host).strip()
    if not args.path or not args.port:
        parser.error("give --config-file, or --path and --port")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error(f"listens on loopback only, not {args.host}")
    return args


class Engine:
    """One chdb session over `path`, queries one at a time."""

    def __init__(self, path):
        from chdb import session  # imported here: `--help` works without chdb

        os.makedirs(path, exist_ok=True)
        self.session = session.Session(path)
        self.lock = threading.Lock()

    def run(self, sql, settings):
        with self.lock:
            for name, value in settings:
                self.session.query(f"SET {name} = {quote(value)}")
            return str(self.session.query(sql, "TabSeparated"))


def quote(value):
    """A setting's value as SQL: numbers as they are, anything else a string literal."""
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settings_of(query_string):
    pairs = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    sql = next((v for k, v in pairs if k == "query"), "")
    chosen = []
    for name, value in pairs:
        if name in NOT_SETTINGS:
            continue
        if not name.replace("_", "").isalnum():
            raise ValueError(f"Code: 115. DB::Exception: Unknown setting {name!r}")
        chosen.append((name, value))
    return sql, chosen


def handler(engine):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, text):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def query(self, body):
            url = urllib.parse.urlsplit(self.path)
            try:
                sql, settings = settings_of(url.query)
            except ValueError as e:
                return self.answer(400, f"{e}\n")
            sql = (sql + "\n" + body).strip() if sql else body
            if not sql.strip():
                return self.answer(400, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)\n")
            try:
                self.answer(200, engine.run(sql, settings))
            except Exception as e:  # chdb's errors carry ClickHouse's message
                self.answer(500, f"{e}\n")

        def do_GET(self):
            if urllib.parse.urlsplit(self.path).path == "/ping":
                return self.answer(200, "Ok.\n")
            self.query("")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > BODY_LIMIT:
                return self.answer(413, "Code: 1001. DB::Exception: query too large\n")
            self.query(self.rfile.read(length).decode("utf-8", "replace"))

    return Handler


def main():
    args = options()
    engine = Engine(args.path)
    server = ThreadingHTTPServer((args.host, args.port), handler(engine))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"chdb {engine.run('SELECT version()', []).strip()} on http://{args.host}:{args.port}, data {args.path}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
