// The worker's side of isolated transforms (isolated_worker.h): the entry point, the sandbox, and
// the loop that runs one document after another through the in-process implementation.

#include "core/transforms/isolated_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>

#include "core/transforms/worker_pool.h"
#include "core/transforms/worker_protocol.h"
#include "core/transforms/worker_sandbox.h"

namespace docpipe {
namespace {

namespace wp = worker_protocol;

bool g_in_worker = false;

// Blocking I/O on the worker's own pipes. False at EOF or on an error.
bool read_exact(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

uint64_t cpu_usec() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto usec = [](const timeval& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1000000 + static_cast<uint64_t>(t.tv_usec);
  };
  return usec(ru.ru_utime) + usec(ru.ru_stime);
}

Status drain(DocumentTransform& t, Status st, std::string& out, bool finishing) {
  while (st && t.has_more()) st = finishing ? t.finish(out) : t.update({}, out);
  return st;
}

// Runs a transform call; an exception becomes the document's error, except that running out of
// memory ends the worker (the daemon reports it).
template <typename F>
Status guarded(const std::string& op, F f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    transform_out_of_memory();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, op + ": " + e.what());
  }
}

class Server {
 public:
  Server(const TransformInfo& info) : info_(info) {}

  // Serves until the daemon closes our stdin; the exit status.
  int run() {
    for (;;) {
      wp::Request request;
      if (!read_exact(STDIN_FILENO, &request, sizeof request)) return 0;  // the daemon is done
      if (request.magic != wp::kMagic || request.header_bytes > wp::kMaxHeaderBytes) {
        return wp::kExitProtocol;
      }
      std::string header(request.header_bytes, '\0');
      if (!read_exact(STDIN_FILENO, header.data(), header.size())) return wp::kExitProtocol;
      if (!serve(header)) return wp::kExitProtocol;
    }
  }

 private:
  // One document: its header is read; its chunks follow.
  bool serve(const std::string& header_text) {
    nlohmann::json header = nlohmann::json::parse(header_text, nullptr, false);
    if (!header.is_object() || !header.contains("params") || !header["params"].is_object() ||
        !header.contains("path") || !header["path"].is_string() || !header.contains("name") ||
        !header["name"].is_string()) {
      return false;
    }
    const std::string path = header["path"];
    const std::string name = header["name"];
    Status st = guarded(info_.op, [&] { return configure(header["params"]); });
    std::unique_ptr<DocumentTransform> t;
    if (st) {
      st = guarded(info_.op, [&]() -> Status {
        t = step_->begin(DocumentContext{path, name});
        return ok();
      });
    }
    std::string out;
    std::string chunk;
    for (;;) {
      wp::Chunk c;
      if (!read_exact(STDIN_FILENO, &c, sizeof c) || c.length > wp::kMaxChunkBytes) return false;
      if (c.length == 0) break;
      chunk.resize(c.length);
      if (!read_exact(STDIN_FILENO, chunk.data(), chunk.size())) return false;
      // After an error the rest of the document is read and dropped.
      if (st) st = guarded(info_.op, [&] { return drain(*t, t->update(chunk, out), out, false); });
    }
    std::string().swap(chunk);
    if (st) st = guarded(info_.op, [&] { return drain(*t, t->finish(out), out, true); });
    std::string metadata;
    if (st) metadata = t->metadata();
    if (metadata.size() > wp::kMaxMetadataBytes) metadata.clear();
    t.reset();
    wp::Response response;
    response.cpu_usec = cpu_usec();
    if (!st) {
      std::string message = st.error().message.substr(0, wp::kMaxErrorBytes);
      response.code = static_cast<uint32_t>(st.error().code) + 1;
      response.length = message.size();
      return write_all(STDOUT_FILENO, &response, sizeof response) &&
             write_all(STDOUT_FILENO, message.data(), message.size());
    }
    response.length = out.size();
    response.metadata_bytes = static_cast<uint32_t>(metadata.size());
    const bool written = write_all(STDOUT_FILENO, &response, sizeof response) &&
                         write_all(STDOUT_FILENO, metadata.data(), metadata.size()) &&
                         write_all(STDOUT_FILENO, out.data(), out.size());
    std::string().swap(out);  // the next document gets the memory back
    return written;
  }

  // The step for these parameters; the last one is kept, since a job's documents share them.
  Status configure(const nlohmann::json& params) {
    std::string text = params.dump();
    if (step_ != nullptr && text == params_) return ok();
    FieldErrors errors;
    step_ = info_.configure(params, TransformEnv{}, errors);
    if (step_ == nullptr) {
      std::string problems;
      for (const FieldError& e : errors) problems += "; " + format_field_error(e);
      return make_error(ErrorCode::kInvalidArgument, info_.op + ": invalid parameters" + problems);
    }
    params_ = std::move(text);
    return ok();
  }

  const TransformInfo& info_;
  std::string params_;
  std::shared_ptr<const TransformStep> step_;
};

int fail_setup(const char* op, const std::string& why) {
  std::fprintf(stderr, "docpipe transform worker %s: %s\n", op, why.c_str());
  return wp::kExitSetup;
}

}  // namespace

ParamSchema add_worker_params(ParamSchema schema) {
  schema.integer("worker_memory_bytes", kMinWorkerMemoryBytes, kMaxWorkerMemoryBytes,
                 kDefaultWorkerMemoryBytes,
                 "memory a document may use in the sandboxed worker process that renders it, "
                 "on top of the worker's own code and libraries (RLIMIT_AS; default 512 MiB, at "
                 "least 64 MiB, at most 16 GiB); a document that needs more fails");
  return schema;
}

WorkerLimits read_worker_limits(ParamReader& reader) {
  WorkerLimits limits;
  limits.memory_bytes = static_cast<uint64_t>(reader.integer("worker_memory_bytes"));
  return limits;
}

std::shared_ptr<const TransformStep> isolated_step(const std::string& op,
                                                   const nlohmann::json& params,
                                                   const WorkerLimits& limits,
                                                   std::shared_ptr<const TransformStep> in_process,
                                                   const WorkerOptions& options) {
  if (g_in_worker) return in_process;
  return make_worker_step(op, params, limits, options);
}

bool in_transform_worker() { return g_in_worker; }

void use_in_process_transforms() { g_in_worker = true; }

void transform_out_of_memory() {
  if (g_in_worker) ::_exit(wp::kExitOutOfMemory);
  std::abort();
}

extern "C" int docpipe_run_transform_worker_if_asked(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "__transform-worker") != 0) return -1;
  g_in_worker = true;
  if (argc != 7) {
    return fail_setup("?", "usage: __transform-worker OP PPID MEMORY_BYTES CPU_SECONDS VARIANT");
  }
  const char* op = argv[2];
  const TransformInfo* info = TransformRegistry::instance().find(op);
  // Only a transform that declares itself isolated may be served: nothing else is meant to run
  // under these rules.
  if (info == nullptr || !info->isolated) return fail_setup(op, "not an isolated transform");
  WorkerLimits limits;
  const long long parent = std::atoll(argv[3]);
  limits.memory_bytes = std::strtoull(argv[4], nullptr, 10);
  limits.cpu_seconds = std::atoi(argv[5]);
  if (parent <= 0 || limits.memory_bytes == 0 || limits.cpu_seconds <= 0) {
    return fail_setup(op, "invalid arguments");
  }
  if (info->prepare_worker) {
    const std::string why = info->prepare_worker(argv[6]);
    if (!why.empty()) return fail_setup(op, why);
  }
  const std::string err = enter_worker_sandbox(limits, static_cast<pid_t>(parent));
  if (!err.empty()) return fail_setup(op, err);
  const wp::Hello hello{wp::kMagic, static_cast<uint32_t>(::getpid())};
  if (!write_all(STDOUT_FILENO, &hello, sizeof hello)) return 0;
  return Server(*info).run();
}

}  // namespace docpipe
