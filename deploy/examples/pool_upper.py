#!/usr/bin/env python3
"""An exec pool converter for docpipe: upper-cases ASCII letters, one document after another.

Copy it to start your own: replace convert_piece() (and keep the loop). docpipe starts it with
"mode": "pool" in the daemon config's `commands` (docs/design.md "exec pools (issue 13)"):

    "commands": {"upper": {"argv": ["/usr/bin/python3", "/usr/share/docpipe/examples/pool_upper.py"],
                           "mode": "pool", "pool": {"size": 2, "max_documents": 1000}}}

The protocol, on stdin and stdout: frames of one type byte, a 4-byte big-endian payload length,
then the payload.
  - At start, write R "docpipe-pool 1" (ready).
  - A document arrives as D frames (data) and one E frame (end). Write the result as D frames
    (at most 1 MiB each), then O (done) or F with a UTF-8 message (the document failed; keep
    running). You may answer before the E: then skip the D frames up to it.
  - Answer P (ping) with P and the same payload.
  - EOF on stdin: exit. SIGTERM: exit.
Anything written to stderr goes to the document's error message when the process dies.

Standard library only. Options: --pid-log FILE appends this process's pid to FILE at start;
--start-delay-ms N waits N ms before saying ready (to try out slow start-ups).
"""

import argparse
import os
import struct
import sys
import time

READY = b"docpipe-pool 1"
MAX_DATA = 1 << 20


class ProtocolError(Exception):
    pass


def read_exact(stream, n):
    """n bytes, or None at EOF before the first byte; EOF inside is a ProtocolError."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            if not buf:
                return None
            raise ProtocolError("EOF inside a frame")
        buf += chunk
    return bytes(buf)


def read_frame(stream):
    """(type, payload), or (None, None) at EOF."""
    header = read_exact(stream, 5)
    if header is None:
        return None, None
    (length,) = struct.unpack(">I", header[1:])
    payload = read_exact(stream, length) if length else b""
    if payload is None:
        raise ProtocolError("EOF inside a frame")
    return header[:1], payload


def write_frame(stream, kind, payload=b""):
    for start in range(0, max(len(payload), 1), MAX_DATA):
        piece = payload[start:start + MAX_DATA]
        stream.write(kind + struct.pack(">I", len(piece)) + piece)


def convert_piece(piece, offset):
    """The conversion, piece by piece: bytes.upper() changes ASCII letters only, so a piece cut
    anywhere (even inside a UTF-8 sequence) converts the same. Raises ValueError to fail the
    document."""
    nul = piece.find(b"\0")
    if nul >= 0:
        raise ValueError("binary document (NUL byte at offset %d)" % (offset + nul))
    return piece.upper()


def serve_document(stdin, stdout, kind, payload):
    """One document, from its first frame (D or E) through its E."""
    offset = 0
    failure = None
    while kind == b"D":
        if failure is None:
            try:
                write_frame(stdout, b"D", convert_piece(payload, offset))
            except ValueError as e:
                failure = str(e)
                # Answer at once; docpipe then sends the E without the rest of the document.
                write_frame(stdout, b"F", failure.encode("utf-8", "replace")[:4096])
                stdout.flush()
        offset += len(payload)
        kind, payload = read_frame(stdin)
    if kind != b"E":
        raise ProtocolError("expected D or E, got %r" % (kind,))
    if failure is None:
        write_frame(stdout, b"O")
    stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid-log", help="append this process's pid to this file at start")
    parser.add_argument("--start-delay-ms", type=int, default=0)
    args = parser.parse_args()
    if args.pid_log:
        with open(args.pid_log, "a") as f:
            f.write("%d\n" % os.getpid())
    if args.start_delay_ms > 0:
        time.sleep(args.start_delay_ms / 1000.0)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_frame(stdout, b"R", READY)
    stdout.flush()
    while True:
        kind, payload = read_frame(stdin)
        if kind is None:
            return 0
        if kind == b"P":
            write_frame(stdout, b"P", payload)
            stdout.flush()
        elif kind in (b"D", b"E"):
            serve_document(stdin, stdout, kind, payload)
        else:
            raise ProtocolError("unknown frame type %r" % (kind,))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProtocolError as e:
        print("pool_upper: protocol error: %s" % e, file=sys.stderr)
        sys.exit(2)
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(1)
