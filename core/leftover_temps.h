#pragma once
// Temp files docpipe created but could not remove: the folder turned read-only (or immutable)
// between the create and the rename, so both the rename and the unlink failed. They are
// remembered, kept in a file in the spool across restarts, and removed later: at the end of every
// job and at start-up, once the folder lets them go. One process-wide list, because the writer
// that meets the problem knows nothing of the spool; it is empty (and costs one lock) normally.

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace docpipe {

class LeftoverTemps {
 public:
  static LeftoverTemps& global();

  // The spool file that keeps the list across restarts ("" to keep it in memory only); entries
  // it already holds are added to the list.
  void set_store(std::string path);

  // Remembers `folder`/`name` (name must be a docpipe temp name; others are ignored).
  void add(const std::string& folder, const std::string& name);

  // Tries to remove every remembered file; forgets those removed or gone (and those whose folder
  // is gone). Returns how many it removed. Blocking: never on the loop thread.
  size_t retry();

  size_t size() const;

 private:
  struct Entry {
    std::string folder;
    std::string name;
    bool operator==(const Entry&) const = default;
  };
  void save_locked();

  mutable std::mutex mu_;
  std::vector<Entry> entries_;
  std::string store_;
};

}  // namespace docpipe
