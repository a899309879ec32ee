#!/usr/bin/env python3
"""Exec pool converters that misbehave on purpose, for tests (the well-behaved one is
deploy/examples/pool_upper.py). Usage: pool_faulty.py MODE [ARG] [--pid-log FILE]

  crash-on TEXT   upper-cases, but kills itself (SIGKILL) mid-document when a piece holds TEXT
  exit-after K    serves K documents, then exits with status 3 at the first frame of the next
  hang            says ready, then never answers a document
  no-pong         serves documents, never answers a ping
  garbage         answers a document with a frame of type 'Z'
  data-after      answers O, then one more D frame
  no-ready        never says ready
  bad-ready       says ready with the wrong text
  fail-start      writes to stderr and exits with status 1 before saying ready
  early-done      answers O after the first D frame, without output, and skips to the E
  expand N        writes every input byte N times
  echo-env        answers every document with its environment (KEY=VALUE lines)
  spawn-escape    starts a detached `sleep ARG2` in its own session, then serves as upper
  slow MS         upper-cases, taking MS milliseconds over each document before answering
  stderr-then-crash-on TEXT
                  writes each document to stderr, upper-cases, and kills itself on TEXT
  binary-ready    says ready with bytes that are not UTF-8
  ignore-eof      upper-cases, but stays when its stdin ends (only a signal ends it)
  hang-once FILE [MS]
                  upper-cases, taking MS milliseconds over each document (default 0); the first
                  process to get a document (FILE absent) writes its pid to FILE and hangs in
                  that document (for a test to kill it there)
"""

import os
import signal
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the shipped example
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "deploy", "examples"))
from pool_upper import READY, read_frame, write_frame  # noqa: E402


def main():
    argv = sys.argv[1:]
    if "--pid-log" in argv:
        i = argv.index("--pid-log")
        with open(argv[i + 1], "a") as f:
            f.write("%d\n" % os.getpid())
        del argv[i:i + 2]
    mode = argv[0]
    arg = argv[1] if len(argv) > 1 else None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if mode == "no-ready":
        time.sleep(3600)
    if mode == "fail-start":
        print("cannot load the model: no such file", file=sys.stderr)
        return 1
    if mode == "spawn-escape":
        subprocess.Popen(["sleep", argv[2]], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = READY
    if mode == "bad-ready":
        ready = b"docpipe-pool 0"
    elif mode == "binary-ready":
        ready = b"\xff\xfe\x80 ready"
    write_frame(stdout, b"R", ready)
    stdout.flush()
    served = 0
    while True:
        kind, payload = read_frame(stdin)
        if kind is None:
            if mode == "ignore-eof":
                time.sleep(3600)
            return 0
        if kind == b"P":
            if mode != "no-pong":
                write_frame(stdout, b"P", payload)
                stdout.flush()
            continue
        if mode == "exit-after" and served >= int(arg):
            return 3
        answered = False
        while kind == b"D":
            if mode == "stderr-then-crash-on":
                sys.stderr.buffer.write(payload + b"\n")
                sys.stderr.flush()
            if mode in ("crash-on", "stderr-then-crash-on") and arg.encode() in payload:
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "expand":
                write_frame(stdout, b"D", b"".join(bytes([b]) * int(arg) for b in payload))
            elif mode == "early-done":
                if not answered:
                    write_frame(stdout, b"O")
                    stdout.flush()
                    answered = True
            elif mode not in ("hang", "echo-env"):
                write_frame(stdout, b"D", payload.upper())
            kind, payload = read_frame(stdin)
        if mode == "hang":
            time.sleep(3600)
        if mode == "hang-once":
            try:
                fd = os.open(arg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                fd = None
            if fd is not None:
                os.write(fd, b"%d\n" % os.getpid())
                os.close(fd)
                time.sleep(3600)
            if len(argv) > 2:
                time.sleep(int(argv[2]) / 1000.0)
        if mode == "slow":
            time.sleep(int(arg) / 1000.0)
        if mode == "garbage":
            stdout.write(b"Z" + struct.pack(">I", 0))
        elif mode == "echo-env":
            env = "".join("%s=%s\n" % kv for kv in sorted(os.environ.items()))
            write_frame(stdout, b"D", env.encode())
            write_frame(stdout, b"O")
        elif not answered:
            write_frame(stdout, b"O")
        if mode == "data-after":
            write_frame(stdout, b"D", b"late")
        stdout.flush()
        served += 1


if __name__ == "__main__":
    sys.exit(main())
