#pragma once
// docpipe_command_pool_* (docs/design.md "exec pools (issue 13)"): the exec pools' processes by
// state and their counters, read from CommandPools at scrape time, so that core/ needs no
// prometheus and a pool's numbers are never stale.

#include <prometheus/collectable.h>

#include <memory>

namespace docpipe {

std::shared_ptr<prometheus::Collectable> make_command_pool_collector();

}  // namespace docpipe
