#pragma once
// Child processes that transforms start (exec commands, isolated transform workers) and what they
// leave behind.
//
// A command can escape its process group (setsid, setpgid) and so the group kill. The process
// that starts children is therefore made a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant
// orphaned by its parent's exit is re-parented to us rather than to init, and
// sweep_escaped_children() kills and reaps it. To tell those orphans from children we started on
// purpose, every child started through spawn_registered() is known by pid; the sweep spares
// those, and also spares anything still in our own process group (a child some other part of the
// daemon forked, which would not be ours to kill or to reap).

#include <sys/types.h>

#include <functional>

namespace docpipe {

// Once per process: ignores SIGPIPE (a write to a child's closed pipe then fails with EPIPE
// instead of killing us; children get the default back), and makes us a child subreaper.
void prepare_for_children();

// Runs `spawn` (which returns the new child's pid, or -1) with the registry locked, and records
// the pid, so that no sweep running meanwhile can take the new child for an orphan.
pid_t spawn_registered(const std::function<pid_t()>& spawn);

// After the child has been reaped.
void forget_child(pid_t pid);

// Kills (SIGKILL) and reaps every child of ours that we did not start and that left our process
// group: the escaped descendants of ended commands. Repeats until a pass finds none (killing one
// re-parents its own children to us), at most a bounded number of passes. Returns how many it
// reaped. Does nothing unless we are a subreaper.
int sweep_escaped_children();

}  // namespace docpipe
