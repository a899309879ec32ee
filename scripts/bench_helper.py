#!/usr/bin/env python3
"""Helpers for scripts/bench (standard library only).

  corpus DIR --docs N --size BYTES   write a deterministic corpus: DIR/NNN/doc-NNNNNN.txt, 1,000
                                     documents per folder, ~BYTES of words with e-mail addresses,
                                     Luhn-valid card numbers and look-alike digit runs; prints the
                                     total size in bytes
  drop SPOOL ID JOB.json            hand JOB.json to the daemon as SPOOL/incoming/ID.json by
                                     rename, wait (inotify) for done/ or failed/ID.report.json
                                     and print "SECONDS STATE SUCCEEDED FAILED"
  table RESULTS.tsv [CHECK...]       print the comparison table from rows written by scripts/bench
                                     ("NAME DOCS BYTES SECONDS RSS_KIB [OUT_BYTES [CPU_SECONDS]]",
                                     one per run: best time, highest RSS; "cores" is CPU seconds
                                     / seconds), then each CHECK with its target and
                                     PASS or BELOW:
                                       --ratio A B MIN     docs/s of A / docs/s of B >= MIN, of
                                                           the best times (MIN "-": printed for
                                                           information); the ratio within each
                                                           round follows, for its spread
                                       --rss-max A KIB     peak RSS of A <= KIB
                                       --rss-within A B PCT  peak RSS of A <= B's + PCT %
                                       --out-max A B       output bytes of A <= B's
                                     --strict: exit 3 if a check is BELOW
  budget [CONFIG.json]              print the daemon's memory_budget_bytes from CONFIG (or the
                                     default, 268435456)
  same-tree EXPECTED ACTUAL [--suffix S] [--gunzip]
                                     fail unless ACTUAL holds exactly the files of EXPECTED (each
                                     name + S), each with the same content (after gunzip)
  submit SPOOL ID PIDS CMD...       run CMD (`docpipe submit ...` of job ID to the node of SPOOL),
                                     then wait like drop; the time includes CMD. Fails as soon as
                                     one of PIDS (comma-separated: nats-server, the daemons) is
                                     gone, instead of waiting 600 s for a report that cannot come
  verify OUT_DIR MANIFEST N         fail unless OUT_DIR holds N files and MANIFEST N lines naming N
                                     different inputs, all succeeded
  pdf-corpus DIR --docs N --pages P  write N PDFs of P pages each (DIR/NNN/doc-NNNNNN.pdf, 100 per
                                     folder): 45 lines of words per page in Helvetica, a correct
                                     cross-reference table; prints the total size in bytes
  same-words DIR_A SUFFIX_A DIR_B SUFFIX_B
                                     fail unless every NAME+SUFFIX_A below DIR_A has the same
                                     words as NAME+SUFFIX_B below DIR_B (white space and form
                                     feeds aside) and the same number of pages (form feeds,
                                     one fewer between pages than pdftotext's one after each)
  similar-words DIR_A SUFFIX_A DIR_B SUFFIX_B MIN
                                     fail unless every NAME+SUFFIX_A below DIR_A shares at least
                                     MIN (0..1) of its words with NAME+SUFFIX_B below DIR_B and
                                     the other way round (two OCR runs of the same engine)
  metric URL NAME                   print the sum of the samples of metric NAME at URL (/metrics)
  cluster-table RESULTS.tsv         print the --cluster summary from rows written by scripts/bench
"""

import collections
import gzip
import json
import os
import random
import subprocess
import sys
import time
import urllib.request

WORDS = ("invoice shipment customer account balance quarterly report delivery warehouse contract "
         "renewal payment overdue schedule meeting project status update review approved pending "
         "received the and for with please contact regarding order number card email address "
         "reference summary details attached team office").split()
DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "example.co.uk")


def luhn_check_digit(payload):
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def token_stream(rng, size):
    """About `size` bytes of words in lines, with e-mails, cards and look-alike digit runs."""
    def digits(n):
        return "%0*d" % (n, rng.randrange(10 ** n))

    def card():
        payload = "4" + digits(14) if rng.random() < 0.5 else "5" + str(rng.randint(1, 5)) + digits(13)
        return payload + luhn_check_digit(payload)

    def decoy():
        payload = "4" + digits(14)
        return payload + str((int(luhn_check_digit(payload)) + rng.randint(1, 9)) % 10)

    def email():
        return rng.choice(WORDS) + rng.choice((".", "_", "")) + rng.choice(WORDS) + "@" + rng.choice(DOMAINS)

    n = size // 7 + 16
    tokens = rng.choices(WORDS, k=n)
    # 7 % of the tokens, at odd positions only: two digit runs are never neighbours, as a space
    # between them could read as one grouped card number.
    for pos in rng.sample(range(1, n, 2), n * 7 // 100):
        roll = rng.random()
        tokens[pos] = email() if roll < 3 / 7 else card() if roll < 5 / 7 else decoy()
    return "\n".join(" ".join(tokens[i:i + 12]) for i in range(0, n, 12)) + "\n"


def cmd_corpus(args):
    target = args[0]
    docs = int(args[args.index("--docs") + 1])
    size = int(args[args.index("--size") + 1])
    rng = random.Random(20261125)
    # Documents are slices of one long stream, cut at whitespace: cheap to make, all different.
    stream = token_stream(rng, max(4 << 20, 2 * size + (1 << 20)))
    total = 0
    for i in range(docs):
        folder = os.path.join(target, "%03d" % (i // 1000))
        if i % 1000 == 0:
            os.makedirs(folder, exist_ok=True)
        start = stream.index(" ", rng.randrange(len(stream) - size - 64)) + 1
        end = start + max(size - 20, 1)
        while end < len(stream) and not stream[end].isspace():
            end += 1
        data = ("document %d of the bench corpus\n" % i + stream[start:end] + "\n").encode()
        with open(os.path.join(folder, "doc-%06d.txt" % i), "wb") as f:
            f.write(data)
        total += len(data)
    print(total)


def gone(pid):
    """True once `pid` has exited: a zombie (its parent has not waited yet) counts as gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class DirWatch:
    """Blocks until something is created in or renamed into one of the folders (inotify through
    ctypes: the standard library has no binding), so that waiting for a report costs the measured
    daemon nothing. A 1 ms poll woke ~1,000 times a second, each wake-up preempting a worker of
    the daemon on a 2-core machine: it added CPU time and spread to what it measured."""

    IN_CLOEXEC, IN_NONBLOCK = 0o2000000, 0o4000
    IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100

    def __init__(self, folders):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(self.IN_CLOEXEC | self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = self.IN_CLOSE_WRITE | self.IN_MOVED_TO | self.IN_CREATE
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            if libc.inotify_add_watch(self.fd, folder.encode(), mask) < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch " + folder)

    def wait(self, seconds):
        """Returns after an event in a watched folder or after SECONDS, whichever comes first."""
        import select
        ready, _, _ = select.select([self.fd], [], [], max(seconds, 0))
        if ready:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)


def wait_report(spool, job_id, start, watch=()):
    """Waits (inotify, re-checked every 0.1 s) for done/ or failed/ID.report.json; prints
    "SECONDS STATE SUCCEEDED FAILED"."""
    folders = [os.path.join(spool, d) for d in ("done", "failed")]
    reports = [os.path.join(folder, job_id + ".report.json") for folder in folders]
    deadline = start + 600
    watcher = DirWatch(folders)
    try:
        while True:
            # Checked after the watch is set and after every wake-up: a report renamed in before
            # the watch existed is seen here, one renamed in later wakes the wait.
            for path in reports:
                if os.path.exists(path):
                    elapsed = time.perf_counter() - start
                    with open(path) as f:
                        report = json.load(f)
                    counts = report["counts"]
                    print("%.6f %s %d %d" % (elapsed, report["state"], counts["succeeded"],
                                             counts["failed"]))
                    return
            if time.perf_counter() > deadline:
                sys.exit("bench_helper: no report for job %s after 600 s" % job_id)
            dead = [pid for pid in watch if gone(pid)]
            if dead:
                sys.exit("bench_helper: process %s exited while job %s ran" %
                         (",".join(map(str, dead)), job_id))
            watcher.wait(0.1)
    finally:
        watcher.close()


def cmd_submit(args):
    spool, job_id, command = args[0], args[1], args[3:]
    watch = [int(pid) for pid in args[2].split(",") if pid]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit("bench_helper: %s exited with %d: %s" % (" ".join(command), done.returncode,
                                                          done.stderr.strip()))
    wait_report(spool, job_id, start, watch)


def cmd_verify(args):
    out_dir, manifest, n = args[0], args[1], int(args[2])
    files = sum(len(names) for _, _, names in os.walk(out_dir))
    inputs, states, lines = set(), {}, 0
    with open(manifest) as f:
        for line in f:
            lines += 1
            record = json.loads(line)
            inputs.add(record["input"])
            states[record["state"]] = states.get(record["state"], 0) + 1
    problems = []
    if files != n:
        problems.append("%d output files in %s, expected %d" % (files, out_dir, n))
    if lines != n or len(inputs) != n:
        problems.append("manifest %s: %d lines naming %d different inputs, expected %d" %
                        (manifest, lines, len(inputs), n))
    if set(states) != {"succeeded"}:
        problems.append("manifest %s: states %s, expected only succeeded" % (manifest, states))
    if problems:
        sys.exit("bench_helper: verify: " + "; ".join(problems))


def cmd_metric(args):
    url, name = args
    total = 0.0
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
    print("%g" % total)


def cmd_drop(args):
    plain = "--plain" in args
    spool, job_id, job_file = [a for a in args if a != "--plain"]
    incoming = os.path.join(spool, "incoming")
    tmp = os.path.join(incoming, "." + job_id + ".tmp")
    with open(job_file, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    if not plain:
        # Like `docpipe submit`: an mtime in the past. --plain: a producer that writes and
        # renames at once (ctime == mtime within a clock tick), as scripts and tools do.
        past = time.time() - 2
        os.utime(tmp, (past, past))
    start = time.perf_counter()
    os.rename(tmp, os.path.join(incoming, job_id + ".json"))
    wait_report(spool, job_id, start)


def read_results(path):
    rows, order = {}, []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            name, docs, size, seconds, rss_kib = fields[:5]
            out = fields[5] if len(fields) > 5 else "-"
            cpu = fields[6] if len(fields) > 6 else "-"
            if name not in rows:
                order.append(name)
                rows[name] = {"docs": int(docs), "bytes": int(size), "seconds": float("inf"),
                              "rss": None, "out": None, "cpu": None, "rounds": []}
            r = rows[name]
            r["rounds"].append(float(seconds))  # the k-th row of a name is from round k
            # The best time over the rounds (with the CPU time of that run), and the highest peak
            # RSS (the conservative figure).
            if float(seconds) < r["seconds"]:
                r["cpu"] = None if cpu == "-" else float(cpu)
            r["seconds"] = min(r["seconds"], float(seconds))
            if rss_kib != "-":
                r["rss"] = max(r["rss"] or 0, int(rss_kib))
            if out != "-":
                r["out"] = max(r["out"] or 0, int(out))
    return rows, order


def verdict(ok):
    return "PASS" if ok else "BELOW"


def cmd_table(args):
    rows, order = read_results(args[0])
    show_out = any(r["out"] is not None for r in rows.values())
    width = max([24] + [len(n) for n in order])
    print("%-*s %9s %9s %9s %8s %6s %15s%s" % (width, "workload", "documents", "seconds", "docs/s",
                                               "MB/s", "cores", "peak RSS (MiB)",
                                               "     output bytes" if show_out else ""))
    for name in order:
        r = rows[name]
        rss = "-" if r["rss"] is None else "%.1f" % (r["rss"] / 1024)
        out = ""
        if show_out:
            out = " %16s" % ("-" if r["out"] is None else "{:,}".format(r["out"]))
        rate = r["docs"] / r["seconds"]
        cores = "-" if r["cpu"] is None else "%.2f" % (r["cpu"] / r["seconds"])
        print("%-*s %9d %9.3f %9s %8.1f %6s %15s%s" % (width, name, r["docs"], r["seconds"],
                                                       "%.0f" % rate if rate >= 100 else "%.2f" % rate,
                                                       r["bytes"] / r["seconds"] / 1e6, cores, rss,
                                                       out))
    print()
    checks, strict, below, i = args[1:], False, 0, 0

    def need(*names):
        missing = [n for n in names if n not in rows]
        if missing:
            sys.exit("bench_helper: table: no results for %s" % ", ".join(missing))
        return [rows[n] for n in names]

    while i < len(checks):
        kind = checks[i]
        if kind == "--strict":
            strict, i = True, i + 1
            continue
        if kind == "--ratio":
            a, b, target = checks[i + 1:i + 4]
            ra, rb = need(a, b)
            ratio = (ra["docs"] / ra["seconds"]) / (rb["docs"] / rb["seconds"])
            # The same ratio within each round (the two ran close together): its spread shows how
            # much the machine's load moved the best-of figure.
            rounds = ""
            if len(ra["rounds"]) > 1 and len(ra["rounds"]) == len(rb["rounds"]):
                rounds = ", rounds %s" % " ".join(
                    "%.2f" % ((ra["docs"] / sa) / (rb["docs"] / sb))
                    for sa, sb in zip(ra["rounds"], rb["rounds"]))
            if target == "-":
                print("ratio %s / %s: %.2f  (for information%s)" % (a, b, ratio, rounds))
            else:
                ok = ratio >= float(target)
                below += not ok
                print("ratio %s / %s: %.2f  (target >= %s: %s%s)" % (a, b, ratio, target,
                                                                   verdict(ok), rounds))
            i += 4
        elif kind == "--rss-max":
            a, limit = checks[i + 1:i + 3]
            (ra,) = need(a)
            ok = ra["rss"] is not None and ra["rss"] <= int(limit)
            below += not ok
            print("peak RSS of %s: %.1f MiB  (target <= %.1f MiB: %s)" %
                  (a, (ra["rss"] or 0) / 1024, int(limit) / 1024, verdict(ok)))
            i += 3
        elif kind == "--rss-within":
            a, b, pct = checks[i + 1:i + 4]
            ra, rb = need(a, b)
            diff = ra["rss"] - rb["rss"]
            ok = ra["rss"] <= rb["rss"] * (1 + float(pct) / 100)
            below += not ok
            print("peak RSS %s - %s: %+.1f MiB (%+.1f %%)  (target <= +%s %%: %s)" %
                  (a, b, diff / 1024, diff / rb["rss"] * 100, pct, verdict(ok)))
            i += 4
        elif kind == "--out-max":
            a, b = checks[i + 1:i + 3]
            ra, rb = need(a, b)
            ok = ra["out"] <= rb["out"]
            below += not ok
            print("output bytes %s / %s: %.4f (%+d bytes)  (target <= 1: %s)" %
                  (a, b, ra["out"] / rb["out"], ra["out"] - rb["out"], verdict(ok)))
            i += 3
        else:
            sys.exit("bench_helper: table: unknown check %s" % kind)
    if strict and below:
        sys.exit(3)


def cmd_budget(args):
    budget = 268435456  # DESIGN.md's default
    if args and args[0]:
        with open(args[0]) as f:
            budget = json.load(f).get("memory_budget_bytes", budget)
    print(int(budget))


def pdf_bytes(pages):
    """A PDF of `pages` (lists of ASCII lines), as tests/support/pdf_writer.h writes them."""
    def literal(line):
        return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"
    objects = [None, None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                           "/Encoding /WinAnsiEncoding >>"]
    kids = []
    for i, lines in enumerate(pages):
        page_obj = 4 + 2 * i
        kids.append("%d 0 R" % page_obj)
        content = "BT /F1 10 Tf 12 TL 50 760 Td\n" + "".join(
            literal(line) + " Tj T*\n" for line in lines) + "ET\n"
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>" % (page_obj + 1))
        objects.append("<< /Length %d >>\nstream\n%sendstream" % (len(content), content))
    objects[0] = "<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(kids), len(pages))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects):
        offsets.append(len(out))
        out += ("%d 0 obj\n%s\nendobj\n" % (i + 1, body)).encode("latin-1")
    xref = len(out)
    out += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)).encode()
    for off in offsets:
        out += ("%010d 00000 n \n" % off).encode()
    out += ("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" %
            (len(objects) + 1, xref)).encode()
    return bytes(out)


def cmd_pdf_corpus(args):
    out_dir = args[0]
    docs = int(args[args.index("--docs") + 1])
    pages = int(args[args.index("--pages") + 1])
    rng = random.Random(7)
    total = 0
    for i in range(docs):
        folder = os.path.join(out_dir, "%03d" % (i // 100))
        os.makedirs(folder, exist_ok=True)
        doc_pages = []
        for p in range(pages):
            words = token_stream(rng, 45 * 80).split()
            lines, line = [], []
            for w in words:
                line.append(w)
                if sum(len(x) + 1 for x in line) > 80:
                    lines.append(" ".join(line))
                    line = []
                if len(lines) == 45:
                    break
            doc_pages.append(lines)
        data = pdf_bytes(doc_pages)
        with open(os.path.join(folder, "doc-%06d.pdf" % i), "wb") as f:
            f.write(data)
        total += len(data)
    print(total)


def file_pairs(dir_a, suffix_a, dir_b, suffix_b, problems):
    """Yields (rel, bytes of NAME+SUFFIX_A below DIR_A, bytes of NAME+SUFFIX_B below DIR_B);
    a missing B is a problem, not a pair."""
    for folder, _, names in os.walk(dir_a):
        for name in names:
            if not name.endswith(suffix_a):
                continue
            stem = name[:len(name) - len(suffix_a)]
            rel = os.path.relpath(os.path.join(folder, stem), dir_a)
            with open(os.path.join(folder, name), "rb") as f:
                a = f.read()
            try:
                with open(os.path.join(dir_b, rel + suffix_b), "rb") as f:
                    b = f.read()
            except OSError as e:
                problems.append(str(e))
                continue
            yield rel, a, b


def cmd_same_words(args):
    dir_a, suffix_a, dir_b, suffix_b = args
    problems, checked = [], 0
    for rel, a, b in file_pairs(dir_a, suffix_a, dir_b, suffix_b, problems):
        checked += 1
        if a.split() != b.split():
            problems.append("%s: the words differ" % rel)
        # pdftotext ends every page with a form feed; docpipe separates pages with one.
        if a.count(b"\f") + 1 != b.count(b"\f"):
            problems.append("%s: %d pages against %d" % (rel, a.count(b"\f") + 1,
                                                        b.count(b"\f")))
    if checked == 0:
        problems.append("no %s files below %s" % (suffix_a, dir_a))
    if problems:
        sys.exit("bench_helper: same-words: %d problem(s), e.g. %s" % (len(problems), problems[0]))


def cmd_similar_words(args):
    dir_a, suffix_a, dir_b, suffix_b, least = args[0], args[1], args[2], args[3], float(args[4])
    problems, checked, worst = [], 0, 1.0
    for rel, a, b in file_pairs(dir_a, suffix_a, dir_b, suffix_b, problems):
        checked += 1
        a, b = a.split(), b.split()
        common = sum((collections.Counter(a) & collections.Counter(b)).values())
        share = min(common / max(len(a), 1), common / max(len(b), 1))
        worst = min(worst, share)
        if share < least:
            problems.append("%s: %.1f%% of the words in common" % (rel, 100 * share))
    if checked == 0:
        problems.append("no file ending in %s below %s" % (suffix_a, dir_a))
    print("similar-words: %d file(s), at least %.1f%% of the words in common" % (checked, 100 * worst))
    if problems:
        sys.exit("bench_helper: similar-words: %d problem(s), e.g. %s" % (len(problems), problems[0]))


def cmd_same_tree(args):
    expected, actual = args[0], args[1]
    suffix = args[args.index("--suffix") + 1] if "--suffix" in args else ""
    gunzip = "--gunzip" in args
    want, problems = set(), []
    for folder, _, names in os.walk(expected):
        rel = os.path.relpath(folder, expected)
        for name in names:
            path = os.path.normpath(os.path.join(rel, name + suffix))
            want.add(path)
            try:
                with open(os.path.join(actual, path), "rb") as f:
                    got = f.read()
                if gunzip:
                    got = gzip.decompress(got)
            except (OSError, EOFError) as e:  # missing, or not gzip / truncated
                problems.append("%s: %s" % (path, e))
                continue
            with open(os.path.join(folder, name), "rb") as f:
                if f.read() != got:
                    problems.append("%s: content differs from %s" %
                                    (path, os.path.join(folder, name)))
    extra = [os.path.normpath(os.path.join(os.path.relpath(folder, actual), name))
             for folder, _, names in os.walk(actual) for name in names]
    extra = [p for p in extra if p not in want]
    if extra:
        problems.append("%d unexpected file(s), e.g. %s" % (len(extra), extra[0]))
    if not want:
        problems.append("no files in %s" % expected)
    if problems:
        sys.exit("bench_helper: same-tree %s %s: %d problem(s): %s" %
                 (expected, actual, len(problems), "; ".join(problems[:5])))


def cmd_cluster_table(args):
    """Rows: "PART NAME DAEMONS DOCS SECONDS" per run; prints the best and the spread of each."""
    runs, order = {}, []
    with open(args[0]) as f:
        for line in f:
            part, name, daemons, docs, seconds = line.rstrip("\n").split("\t")
            key = (part, name)
            if key not in runs:
                order.append(key)
                runs[key] = {"daemons": int(daemons), "docs": int(docs), "seconds": []}
            runs[key]["seconds"].append(float(seconds))
    print("%-9s %-26s %7s %9s %9s %9s %9s" %
          ("part", "run", "daemons", "documents", "best s", "worst s", "docs/s"))
    best = {}
    for key in order:
        r = runs[key]
        best[key] = min(r["seconds"])
        print("%-9s %-26s %7d %9d %9.3f %9.3f %9.0f" % (key[0], key[1], r["daemons"], r["docs"],
                                                        best[key], max(r["seconds"]),
                                                        r["docs"] / best[key]))
    print()
    one, three = ("scaling", "exec sleep 20 ms, 1 node"), ("scaling", "exec sleep 20 ms, 3 nodes")
    if one in best and three in best:
        ratio = best[one] / best[three]
        print("speed-up 3 nodes / 1 node (exec, latency-bound): %.2f  (target >= 2.5: %s)" %
              (ratio, verdict(ratio >= 2.5)))
    local, cluster = ("overhead", "identity, no cluster"), ("overhead", "identity, cluster 1 node")
    if local in best and cluster in best:
        docs = runs[local]["docs"]
        print("NATS path overhead per document (1 node, identity): %+.1f us  ((%.3f - %.3f) s / %d)" %
              ((best[cluster] - best[local]) / docs * 1e6, best[cluster], best[local], docs))


def main():
    commands = {"corpus": cmd_corpus, "drop": cmd_drop, "table": cmd_table, "submit": cmd_submit,
                "verify": cmd_verify, "metric": cmd_metric, "cluster-table": cmd_cluster_table,
                "same-tree": cmd_same_tree, "budget": cmd_budget, "pdf-corpus": cmd_pdf_corpus,
                "same-words": cmd_same_words, "similar-words": cmd_similar_words}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
