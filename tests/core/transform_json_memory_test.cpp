// json.pretty and json.minify hold the document they are charged for, and little else: measured
// in a forked child whose address space is capped at what it had plus the document plus 64 MiB.

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <string>

#include "core/transform.h"
#include "tests/core/transform_test_util.h"

using docpipe::DocumentContext;
using docpipe::DocumentTransform;
using docpipe::Status;
using docpipe::TransformStep;
using docpipe::test::make_step;
using json = nlohmann::json;

namespace {

// About 16 MiB, deep and wide: records with nested arrays and objects, one object of 200,000
// keys, and a run of nesting 400 levels deep.
std::string deep_wide_document() {
  std::string doc = "{\"records\": [";
  for (int i = 0; doc.size() < (12u << 20); ++i) {
    if (i > 0) doc += ',';
    const std::string n = std::to_string(i);
    doc += "{\"id\":" + n + ",\"name\":\"n" + n + "\",\"tags\":[\"a\",\"b\",1.5e3],\"nested\":{" +
           "\"x\":[1,[2,[3,{\"y\":null}]]],\"z\":true}}";
  }
  doc += "], \"wide\": {";
  for (int i = 0; i < 200000; ++i) {
    if (i > 0) doc += ',';
    doc += "\"k" + std::to_string(i) + "\":" + std::to_string(i);
  }
  doc += "}, \"deep\": " + std::string(400, '[') + std::string(400, ']') + "}";
  return doc;
}

size_t address_space_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

// Runs the step over `doc` in a child limited to its address space at start + `allowance`,
// feeding 64 KiB chunks as the pipeline does and dropping each output piece once written.
// Returns the child's exit status: 0 ok, 1 transform error, 2 out of memory; -1 if it died.
int run_capped(const TransformStep& step, const std::string& doc, size_t allowance) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    struct rlimit limit;
    limit.rlim_cur = limit.rlim_max = address_space_bytes() + allowance;
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(4);
    try {
      std::unique_ptr<DocumentTransform> t = step.begin(DocumentContext{"d/doc.json", "doc.json"});
      std::string out;
      size_t written = 0;
      for (size_t at = 0; at < doc.size(); at += 64 * 1024) {
        if (!t->update(std::string_view(doc).substr(at, 64 * 1024), out)) ::_exit(1);
      }
      do {
        if (!t->finish(out)) ::_exit(1);
        written += out.size();
        out.clear();
      } while (t->has_more());
      ::_exit(written > doc.size() / 2 ? 0 : 1);
    } catch (const std::bad_alloc&) {
      ::_exit(2);
    } catch (...) {
      ::_exit(3);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("json.pretty: a deep and wide 16 MiB document fits in its size plus 64 MiB") {
  const std::string doc = deep_wide_document();
  REQUIRE(doc.size() > (15u << 20));
  size_t allowance = doc.size() + (64u << 20);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizers keep freed blocks in quarantine and add their own bookkeeping; the DOM this
  // guards against took over 400 MB, far beyond this either way.
  allowance += 96u << 20;
#endif
  CHECK(run_capped(*make_step("json.pretty", {{"indent", 2}}), doc, allowance) == 0);
  CHECK(run_capped(*make_step("json.minify", json::object()), doc, allowance) == 0);
}
