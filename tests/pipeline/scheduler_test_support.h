#pragma once
// Helpers for the scheduler's tests: jobs of numbered documents and a bare outcome.

#include <memory>
#include <optional>
#include <string>

#include "pipeline/scheduler.h"
#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe::testing {

// A job of `count` documents named "ID-0", "ID-1", ... (nothing on disk: the scheduler reads none).
inline std::shared_ptr<FakeJob> counted_job(const std::string& id, size_t count, int priority = 0) {
  return std::make_shared<FakeJob>(make_spec(id, "/out", nullptr, priority),
                                   [id, count](size_t i) -> std::optional<DocumentRef> {
                                     if (i >= count) return std::nullopt;
                                     std::string rel = id + "-" + std::to_string(i);
                                     return DocumentRef{"/in/" + rel, rel};
                                   });
}

inline DocumentOutcome outcome_for(const ScheduledDocument& d) {
  DocumentOutcome o;
  o.doc = d.doc;
  return o;
}

}  // namespace docpipe::testing
