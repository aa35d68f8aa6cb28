#!/usr/bin/python3
"""One GET to 127.0.0.1:PORT, reduced to the outcome web_config_diff_test.sh
compares between two exporters (stdlib only).

  web_config_client.py PORT [--tls VERSION --ca FILE [--cert FILE --key FILE]]
                       [--ciphers LIST] [--curve NAME]
                       [--user NAME --password SECRET | --authorization VALUE]
                       [--path PATH] [--report-headers] [--timeout SECONDS]
  web_config_client.py PORT --batch [--timeout SECONDS] < REQUESTS

--tls VERSION is 1.0, 1.1, 1.2, 1.3 (offer only that version) or any (the
client's defaults, 1.2 and 1.3); without --tls the request is plain HTTP.
The client runs at OpenSSL security level 0 so that it can offer TLS 1.0 and
1.1: whether the version is refused is then the server's answer, not ours.
The server's certificate must verify against --ca for 127.0.0.1. --ciphers
(OpenSSL names, TLS 1.2 and below) and --curve (one group) narrow what the
client offers. --authorization sends that Authorization header as it is.

--batch reads one request a line from stdin: its options, shell-quoted.

Prints one line "OUTCOME<TAB>DETAIL" a request and exits 0; exit 2 is a
usage error.
OUTCOME is what the comparison uses:
  client-error        the client could not make its request (a bad option, a
                      group OpenSSL cannot offer): never a server's answer
  connect-failed      no TCP connection
  handshake-failed    the TLS handshake failed, or the server sent a TLS alert
                      instead of an answer (TLS 1.3 refuses a client
                      certificate only after the client's side of the
                      handshake is done)
  [TLSv1.x ]closed    connected (and handshaken) but closed without an answer
  timeout             no complete answer within --timeout seconds
  not-http            an answer that is not HTTP
  [TLSv1.x ]http-STATUS[ basic][ metrics][ header:NAME=VALUE...]
                      an HTTP answer: "basic" when a 401 carries
                      WWW-Authenticate: Basic, "metrics" when a 200 body looks
                      like a text exposition, then (--report-headers) every
                      header of the web config's allowed set it carries
DETAIL is for people (the TLS alert, the error text), never compared.
"""

import argparse
import re
import shlex
import socket
import ssl
import sys
import time
import warnings
from base64 import b64encode

HOST = "127.0.0.1"
VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's http_server_config.headers may set only these.
TOOLKIT_HEADERS = ("strict-transport-security", "x-content-type-options", "x-frame-options",
                   "x-xss-protection", "content-security-policy")
SAMPLE = re.compile(rb"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+( \S+)?$")
MAX_ANSWER_BYTES = 16 << 20


class Timeout(Exception):
    pass


def tls_context(args):
    warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1 are the point
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers((args.ciphers or "DEFAULT") + ":@SECLEVEL=0")
    if args.curve:
        ctx.set_ecdh_curve(args.curve)
    if args.tls != "any":
        ctx.minimum_version = VERSIONS[args.tls]
        ctx.maximum_version = VERSIONS[args.tls]
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def request_bytes(args):
    lines = ["GET %s HTTP/1.1" % args.path, "Host: %s:%d" % (HOST, args.port), "Connection: close",
             "Accept: text/plain", "User-Agent: shmetrics-web-config-diff"]
    if args.user is not None:
        token = b64encode(("%s:%s" % (args.user, args.password)).encode()).decode()
        lines.append("Authorization: Basic " + token)
    if args.authorization is not None:
        lines.append("Authorization: " + args.authorization)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_all(sock, deadline):
    """Everything the server sends until it closes, within the deadline."""
    data = b""
    while len(data) < MAX_ANSWER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise Timeout() from None
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break  # what came before the reset still counts
        if not chunk:
            break
        data += chunk
    return data


def dechunk(body):
    """The body of a chunked answer; None when the chunks are malformed."""
    out = b""
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return None
        if not sep or len(rest) < size + 2:
            return None
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]


def looks_like_metrics(body):
    lines = [line for line in body.split(b"\n") if line and not line.startswith(b"#")]
    return bool(lines) and all(SAMPLE.match(line) for line in lines) and b"# TYPE " in body


def describe_answer(data, report_headers):
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    match = re.match(rb"^HTTP/1\.[01] ([0-9]{3})", lines[0])
    if not sep or not match:
        return "not-http", repr(data[:80])
    status = int(match.group(1))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower().decode("latin-1"), value.strip().decode("latin-1"))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
        if body is None:
            return "not-http", "malformed chunked body"
    parts = ["http-%d" % status]
    if status == 401 and headers.get("www-authenticate", "").split(" ")[0].lower() == "basic":
        parts.append("basic")
    if status == 200 and looks_like_metrics(body):
        parts.append("metrics")
    for name in TOOLKIT_HEADERS if report_headers else ():
        if name in headers:
            parts.append("header:%s=%s" % (name, headers[name]))
    return " ".join(parts), "%d body bytes, %s" % (len(body), repr(body[:60]))


def run(args):
    context = None
    if args.tls:
        try:
            context = tls_context(args)
        except (ssl.SSLError, OSError) as e:  # our side: never the server's answer
            return "client-error", "TLS context: %s" % e
    deadline = time.monotonic() + args.timeout
    try:
        sock = socket.create_connection((HOST, args.port), timeout=args.timeout)
    except socket.timeout:
        return "timeout", "connect"
    except OSError as e:
        return "connect-failed", str(e)
    with sock:
        version = ""
        if args.tls:
            try:
                sock = context.wrap_socket(sock, server_hostname=HOST)
            except socket.timeout:
                return "timeout", "handshake"
            except ssl.SSLError as e:
                return "handshake-failed", e.reason or str(e)
            except OSError as e:  # reset or EOF in the middle of the handshake
                return "handshake-failed", "%s: %s" % (type(e).__name__, e)
            version = sock.version() + " "
        try:
            sock.sendall(request_bytes(args))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer, if any, is still readable
        except ssl.SSLError as e:
            return "handshake-failed", "alert while sending: %s" % (e.reason or e)
        try:
            data = read_all(sock, deadline)
        except Timeout:
            return "timeout", "no answer"
        except ssl.SSLError as e:
            return "handshake-failed", "alert after the handshake: %s" % (e.reason or e)
    if not data:
        return version + "closed", ""
    outcome, detail = describe_answer(data, args.report_headers)
    return version + outcome, detail


def request_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--tls", choices=sorted(VERSIONS) + ["any"])
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--ciphers")
    parser.add_argument("--curve")
    parser.add_argument("--authorization")
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    parser.add_argument("--path", default="/metrics")
    parser.add_argument("--report-headers", action="store_true")
    parser.add_argument("--timeout", type=float, default=5)
    return parser


def parse_request(parser, argv):
    args = parser.parse_args(argv)
    if args.tls and not args.ca:
        parser.error("--tls needs --ca")
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    return args


def main():
    parser = request_parser()
    first = parse_request(parser, sys.argv[1:])
    if not first.batch:
        requests = [first]
    else:
        # Every line of stdin is one request's options, shell-quoted (an
        # empty line is a plain GET); the
        # port and --timeout come from the command line.
        common = [str(first.port), "--timeout", str(first.timeout)]
        requests = [parse_request(parser, common + shlex.split(line)) for line in sys.stdin]
    for args in requests:
        outcome, detail = run(args)
        print("%s\t%s" % (outcome, detail.replace("\t", " ").replace("\n", " ")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
