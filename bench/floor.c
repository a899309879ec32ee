/* The floor: only what any tool that transforms files one by one must do per document, so that
 * docpipe's figures can be read against the physical limit of the machine rather than against a
 * convenient tool (`cp -r` is single-threaded). For each regular file below SRC: open, read it
 * whole, write a temp file in the matching folder below DST, rename it into place. N threads
 * share the files. With -f, each temp file is fsynced before its rename and every output folder
 * once at the end (what `durability: fsync` promises). With -T (for information), each output is
 * written as docpipe writes outputs without fsync: an O_TMPFILE file in the target folder, then
 * linkat(AT_EMPTY_PATH) to its name (root, or Linux 6.10 or later), instead of a named temp file
 * and a rename.
 *
 *   floor [-t THREADS] [-f | -T] SRC DST      (DST and its sub-folders are created)
 *
 * Prints "FILES BYTES SECONDS" on one line. Built by scripts/bench with `cc -O2 -pthread`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char** files;  /* relative to SRC */
static size_t nfiles, capfiles;
static char** dirs;   /* relative to SRC, "" for SRC itself */
static size_t ndirs, capdirs;
static const char* src;
static const char* dst;
static int do_fsync;
static int anonymous; /* -T */
static atomic_size_t next_file;
static atomic_ullong total_bytes;

static void die(const char* what, const char* path) {
  fprintf(stderr, "floor: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void push(char*** list, size_t* n, size_t* cap, const char* s) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 1024;
    *list = realloc(*list, *cap * sizeof **list);
    if (*list == NULL) die("out of memory", "");
  }
  (*list)[(*n)++] = strdup(s);
}

static int visit(const char* path, const struct stat* st, int type, struct FTW* ftw) {
  (void)st;
  (void)ftw;
  const char* rel = path + strlen(src);
  while (*rel == '/') ++rel;
  if (type == FTW_F) push(&files, &nfiles, &capfiles, rel);
  if (type == FTW_D) push(&dirs, &ndirs, &capdirs, rel);
  return 0;
}

static void* work(void* arg) {
  (void)arg;
  char* buf = NULL;
  size_t cap = 0;
  char in_path[4096], out_path[4096], tmp_path[4096];
  for (;;) {
    size_t i = atomic_fetch_add(&next_file, 1);
    if (i >= nfiles) break;
    snprintf(in_path, sizeof in_path, "%s/%s", src, files[i]);
    int in = open(in_path, O_RDONLY | O_CLOEXEC);
    if (in < 0) die("open", in_path);
    struct stat st;
    if (fstat(in, &st) != 0) die("fstat", in_path);
    if ((size_t)st.st_size + 1 > cap) {
      cap = (size_t)st.st_size + 1;
      buf = realloc(buf, cap);
      if (buf == NULL) die("out of memory", in_path);
    }
    size_t got = 0;
    ssize_t n;
    while ((n = read(in, buf + got, cap - got)) > 0) got += (size_t)n;
    if (n < 0) die("read", in_path);
    close(in);
    /* The temp file beside its target, as docpipe writes (".NAME.tmp.N"). */
    snprintf(out_path, sizeof out_path, "%s/%s", dst, files[i]);
    char* slash = strrchr(out_path, '/');
    snprintf(tmp_path, sizeof tmp_path, "%.*s/.%s.tmp.%zu", (int)(slash - out_path), out_path,
             slash + 1, i);
    int out;
    if (anonymous) {
      *slash = '\0'; /* the folder */
      out = open(out_path, O_WRONLY | O_TMPFILE | O_CLOEXEC, 0644);
      *slash = '/';
    } else {
      out = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (out < 0) die("create", tmp_path);
    size_t put = 0;
    while (put < got) {
      n = write(out, buf + put, got - put);
      if (n < 0) die("write", tmp_path);
      put += (size_t)n;
    }
    if (do_fsync && fsync(out) != 0) die("fsync", tmp_path);
    if (anonymous) {
      if (linkat(out, "", AT_FDCWD, out_path, AT_EMPTY_PATH) != 0) die("link", out_path);
      if (close(out) != 0) die("close", out_path);
    } else {
      if (close(out) != 0) die("close", tmp_path);
      if (rename(tmp_path, out_path) != 0) die("rename", out_path);
    }
    atomic_fetch_add(&total_bytes, got);
  }
  free(buf);
  return NULL;
}

int main(int argc, char** argv) {
  int threads = 2;
  int opt;
  while ((opt = getopt(argc, argv, "t:fT")) != -1) {
    if (opt == 't') threads = atoi(optarg);
    else if (opt == 'f') do_fsync = 1;
    else if (opt == 'T') anonymous = 1;
    else return 2;
  }
  if (argc - optind != 2 || threads < 1 || (do_fsync && anonymous)) {
    fprintf(stderr, "usage: floor [-t THREADS] [-f | -T] SRC DST\n");
    return 2;
  }
  src = argv[optind];
  dst = argv[optind + 1];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  /* Finding the files is part of the work of any tool. */
  if (nftw(src, visit, 64, FTW_PHYS) != 0) die("walk", src);
  char path[4096];
  for (size_t d = 0; d < ndirs; ++d) {
    snprintf(path, sizeof path, "%s/%s", dst, dirs[d]);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die("mkdir", path);
  }
  pthread_t* tids = calloc((size_t)threads, sizeof *tids);
  for (int t = 0; t < threads; ++t) pthread_create(&tids[t], NULL, work, NULL);
  for (int t = 0; t < threads; ++t) pthread_join(tids[t], NULL);
  if (do_fsync) {
    for (size_t d = 0; d < ndirs; ++d) {
      snprintf(path, sizeof path, "%s/%s", dst, dirs[d]);
      int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0 || fsync(fd) != 0) die("fsync", path);
      close(fd);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("%zu %llu %.6f\n", nfiles, (unsigned long long)atomic_load(&total_bytes), seconds);
  return 0;
}
