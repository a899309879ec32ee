#pragma once
// The one posix_spawn set-up for the children transforms start (exec commands in subprocess.h,
// isolated workers in worker_pool.h): chosen descriptors on 0-2 and every other descriptor closed
// in the child (some library may have opened one without O_CLOEXEC), default signal dispositions
// and an empty signal mask, whatever the daemon blocks or ignores, and the pid registered with
// the child reaper (child_reaper.h) before any sweep can see it.

#include <sys/types.h>

namespace docpipe {

struct SpawnSpec {
  const char* file = nullptr;  // the program; looked up in PATH when search_path
  bool search_path = false;    // posix_spawnp rather than posix_spawn
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  // Dup'ed onto the child's stdin, stdout and stderr; -1 leaves the daemon's own in place.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Its own process group (pgid = its pid), so that one kill() reaches all its descendants.
  bool own_process_group = false;
};

// Starts the child and sets *pid. Returns 0, or the errno posix_spawn gave (nothing started).
int spawn_child(const SpawnSpec& spec, pid_t* pid);

}  // namespace docpipe
