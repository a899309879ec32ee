#include "daemon/submit.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "core/spool.h"
#include "daemon/intake.h"

namespace docpipe {

int submit_by_drop(const std::string& job_file, const DaemonConfig& config, std::ostream& out,
                   std::ostream& err, std::string* id_out) {
  auto text = read_job_file(job_file, config.max_job_file_bytes);
  if (!text) {
    err << "docpipe submit: "
        << (text.error().code == ErrorCode::kTooLarge ? job_file + ": " : std::string())
        << text.error().message << "\n";
    return 1;
  }
  std::string base(parent_path(absolute_path(job_file)));
  std::string stem = job_file_stem(job_file);

  FieldErrors errors;
  auto job = validate_job_text(*text, stem, base, config, errors);
  if (!job) {
    for (const auto& e : errors) err << job_file << ": " << format_field_error(e) << "\n";
    return 1;
  }
  // The daemon resolves relative paths against incoming/; pin them to what was validated here.
  std::string pinned = pin_job_text(*text, job->spec);

  Spool spool(config.spool_dir, config.durability_fsync);
  std::string name = job->spec.id + ".json";
  const std::string tmp = temp_path_for(spool.incoming(), name);
  const std::string dest = spool.incoming() + "/" + name;
  Status st = write_new_file(tmp, pinned, config.durability_fsync);
  if (st) {
    // The rename is what tells the watch folder the file is complete (IN_MOVED_TO).
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) != 0) {
      st = errno == EEXIST
               ? make_error(ErrorCode::kExists,
                            "a job file " + name + " is already waiting in " + spool.incoming())
               : errno_error("rename into " + spool.incoming(), errno);
      ::unlink(tmp.c_str());
    } else if (config.durability_fsync) {
      st = fsync_dir(spool.incoming());
    }
  }
  if (!st) {
    err << "docpipe submit: " << st.error().message << "\n";
    return 1;
  }
  if (id_out != nullptr) *id_out = job->spec.id;
  out << "submitted job \"" << job->spec.id << "\" (" << job->documents << " document(s)) to "
      << dest << "\n";
  return 0;
}

}  // namespace docpipe
