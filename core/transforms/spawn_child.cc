#include "core/transforms/spawn_child.h"

#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include "core/transforms/child_reaper.h"

namespace docpipe {

int spawn_child(const SpawnSpec& spec, pid_t* pid) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (spec.stdin_fd >= 0) posix_spawn_file_actions_adddup2(&actions, spec.stdin_fd, STDIN_FILENO);
  if (spec.stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, spec.stdout_fd, STDOUT_FILENO);
  }
  if (spec.stderr_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, spec.stderr_fd, STDERR_FILENO);
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (spec.own_process_group) {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);

  int rc = 0;
  spawn_registered([&] {
    rc = spec.search_path ? ::posix_spawnp(pid, spec.file, &actions, &attr, spec.argv, spec.envp)
                          : ::posix_spawn(pid, spec.file, &actions, &attr, spec.argv, spec.envp);
    return rc == 0 ? *pid : -1;
  });
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return rc;
}

}  // namespace docpipe
