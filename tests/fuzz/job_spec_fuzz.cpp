// The job-file parser (parse_job) over arbitrary text: malformed JSON, wrong types, unknown keys,
// hostile globs and transform parameters must end in a JobSpec or field errors, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  JobParseOptions options;
  options.default_id = "fuzz";
  options.base_dir = "/nonexistent/fuzz";
  FieldErrors errors;
  std::optional<JobSpec> job =
      parse_job(std::string_view(reinterpret_cast<const char*>(data), size), options, errors);
  // Exactly one of: a job, or at least one error saying why not.
  if (job.has_value() == !errors.empty()) __builtin_trap();
  if (job) (void)output_path_for(*job, "a/b.txt");
  for (const FieldError& e : errors) (void)format_field_error(e);
  return 0;
}
