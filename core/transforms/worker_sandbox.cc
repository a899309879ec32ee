#include "core/transforms/worker_sandbox.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DOCPIPE_SANITIZED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define DOCPIPE_SANITIZED_BUILD 1
#endif
#endif

namespace docpipe {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;  // no filter on other architectures
#endif

// What a worker serving documents from its pipes needs: I/O on the descriptors it has, memory,
// signals for abort(), time and usage for its CPU report, futex for libstdc++'s once-flags.
// mmap and mprotect are checked separately: never PROT_EXEC.
const long kAllowed[] = {
    SYS_read,   SYS_write,       SYS_readv,           SYS_writev,         SYS_close,
    SYS_lseek,  SYS_brk,         SYS_munmap,          SYS_mremap,         SYS_madvise,
    SYS_exit,   SYS_exit_group,  SYS_rt_sigreturn,    SYS_rt_sigprocmask, SYS_rt_sigaction,
    SYS_tgkill, SYS_gettid,      SYS_getpid,          SYS_clock_gettime,  SYS_getrusage,
    SYS_futex,  SYS_sched_yield, SYS_restart_syscall, SYS_getrandom,      SYS_newfstatat,
#ifdef SYS_fstat
    SYS_fstat,
#endif
};

sock_filter stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return BPF_JUMP(code, k, jt, jf);
}

std::string install_seccomp_filter() {
  if (kAuditArch == 0) return "";
  std::vector<sock_filter> prog;
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  // The x32 ABI numbers the same calls differently: refuse all of it.
  prog.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, 0x40000000u, 0, 1));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
  for (long nr : kAllowed) {
    prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  }
  prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 1, 0));
  prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 3));
  // The protection argument (the third) is an int: its low 32 bits (little-endian).
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + 2 * 8));
  prog.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 1, 0));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) {
    return std::string("seccomp filter: ") + std::strerror(errno);
  }
  return "";
}

std::string set_limit(int resource, const char* name, rlim_t soft, rlim_t hard) {
  rlimit lim{soft, hard};
  // prlimit, not setrlimit: the systemd unit's SystemCallFilter=~@resources refuses setrlimit.
  if (::prlimit(0, static_cast<__rlimit_resource>(resource), &lim, nullptr) != 0) {
    return std::string(name) + ": " + std::strerror(errno);
  }
  return "";
}

}  // namespace

uint64_t mapped_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return 0;
  unsigned long long pages = 0;
  const bool read = std::fscanf(f, "%llu", &pages) == 1;
  std::fclose(f);
  if (!read) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

bool worker_sandbox_is_complete() {
#ifdef DOCPIPE_SANITIZED_BUILD
  return false;
#else
  return kAuditArch != 0;
#endif
}

std::vector<std::string> worker_environment([[maybe_unused]] const WorkerLimits& limits) {
  // A worker is one thread (its sandbox allows no clone): OpenMP, which tesseract is built with,
  // must not start a team.
  std::vector<std::string> env{"OMP_THREAD_LIMIT=1"};
  // Where tesseract's models are, if the daemon was told (ocr_engine.h).
  if (const char* tessdata = std::getenv("TESSDATA_PREFIX"); tessdata != nullptr) {
    env.push_back(std::string("TESSDATA_PREFIX=") + tessdata);
  }
#ifdef DOCPIPE_SANITIZED_BUILD
  const std::string bound =
      "allocator_may_return_null=1:soft_rss_limit_mb=" + std::to_string(limits.memory_bytes >> 20);
  for (const char* name : {"ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}) {
    const char* value = std::getenv(name);
    std::string entry = std::string(name) + "=" + (value != nullptr ? value : "");
    if (std::string(name) != "UBSAN_OPTIONS" && std::string(name) != "LSAN_OPTIONS") {
      entry += (value != nullptr && *value != '\0' ? ":" : "") + bound;
    }
    env.push_back(entry);
  }
#endif
  return env;
}

std::string enter_worker_sandbox(const WorkerLimits& limits, pid_t parent) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    return std::string("PR_SET_PDEATHSIG: ") + std::strerror(errno);
  }
  if (::getppid() != parent) return "the daemon that started it is gone";
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return std::string("PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno);
  }
  std::string err;
#ifndef DOCPIPE_SANITIZED_BUILD
  // The document's allowance comes on top of what the worker has mapped by now: its code, the
  // libraries (libxml2 brings ICU's 30 MiB of data) and what prepare_worker loaded. So the limit
  // means the same whatever the binary links.
  const uint64_t own = mapped_bytes();
  if (own == 0) return "cannot read /proc/self/statm";
  const rlim_t as = static_cast<rlim_t>(own + limits.memory_bytes);
  err = set_limit(RLIMIT_AS, "RLIMIT_AS", as, as);
  if (!err.empty()) return err;
#endif
  // Only the pipes (0, 1) and the daemon's stderr (2) stay open.
  ::close_range(3, ~0u, 0);
  // SIGXCPU at the soft limit; the hard limit (SIGKILL) in case SIGXCPU were caught.
  const rlim_t cpu = static_cast<rlim_t>(limits.cpu_seconds);
  if (!(err = set_limit(RLIMIT_CPU, "RLIMIT_CPU", cpu, cpu + 5)).empty()) return err;
#ifdef DOCPIPE_SANITIZED_BUILD
  // A sanitizer's runtime opens pipes of its own (it tests whether memory is readable by writing
  // it to one): with 4 descriptors its checks misfire ("invalid vptr"), so allow it a few more.
  constexpr rlim_t kMaxFiles = 32;
#else
  constexpr rlim_t kMaxFiles = 4;
#endif
  if (!(err = set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", kMaxFiles, kMaxFiles)).empty()) return err;
  if (!(err = set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0)).empty()) return err;
  if (worker_sandbox_is_complete()) return install_seccomp_filter();
  return "";
}

}  // namespace docpipe
