#pragma once
// The pipeline's stats, declared in one place (prometheus-cpp). Created by the daemon on its
// registry; tests create their own registry and read the values back.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace docpipe {

enum class Stage { kRead = 0, kTransform = 1, kWrite = 2 };
const char* stage_name(Stage s);

// How an if_exists "unchanged" check of one document ended (docs/design.md "Redo only what
// changed"): skipped by the stat pre-check alone, skipped after hashing the input, redone
// (input, chain or output differ), redone with no record to compare (no output, or an output
// the store does not know), or redone because the store could not be read.
enum class UnchangedCheck { kPrecheck = 0, kHashedSame = 1, kChanged = 2, kNew = 3, kError = 4 };
const char* unchanged_check_name(UnchangedCheck r);

struct PipelineMetrics {
  explicit PipelineMetrics(prometheus::Registry& registry);

  prometheus::Histogram& stage_duration(Stage s) { return *stage_duration_[int(s)]; }
  prometheus::Gauge& queue_depth(Stage s) { return *queue_depth_[int(s)]; }
  prometheus::Gauge& in_flight(Stage s) { return *in_flight_[int(s)]; }
  prometheus::Gauge& buffer_bytes_in_use() { return *buffer_bytes_; }
  prometheus::Gauge& memory_budget_bytes() { return *budget_bytes_; }
  prometheus::Counter& unchanged_checks(UnchangedCheck r) { return *unchanged_checks_[int(r)]; }

 private:
  prometheus::Histogram* stage_duration_[3];  // docpipe_stage_duration_seconds{stage}
  prometheus::Gauge* queue_depth_[3];         // docpipe_stage_queue_depth{stage}
  prometheus::Gauge* in_flight_[3];           // docpipe_stage_in_flight{stage}
  prometheus::Gauge* buffer_bytes_;           // docpipe_buffer_bytes_in_use
  prometheus::Gauge* budget_bytes_;           // docpipe_memory_budget_bytes
  prometheus::Counter* unchanged_checks_[5];  // docpipe_unchanged_checks_total{result}
};

}  // namespace docpipe
