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

struct PipelineMetrics {
  explicit PipelineMetrics(prometheus::Registry& registry);

  prometheus::Histogram& stage_duration(Stage s) { return *stage_duration_[int(s)]; }
  prometheus::Gauge& queue_depth(Stage s) { return *queue_depth_[int(s)]; }
  prometheus::Gauge& in_flight(Stage s) { return *in_flight_[int(s)]; }
  prometheus::Gauge& buffer_bytes_in_use() { return *buffer_bytes_; }
  prometheus::Gauge& memory_budget_bytes() { return *budget_bytes_; }

 private:
  prometheus::Histogram* stage_duration_[3];  // docpipe_stage_duration_seconds{stage}
  prometheus::Gauge* queue_depth_[3];         // docpipe_stage_queue_depth{stage}
  prometheus::Gauge* in_flight_[3];           // docpipe_stage_in_flight{stage}
  prometheus::Gauge* buffer_bytes_;           // docpipe_buffer_bytes_in_use
  prometheus::Gauge* budget_bytes_;           // docpipe_memory_budget_bytes
};

}  // namespace docpipe
