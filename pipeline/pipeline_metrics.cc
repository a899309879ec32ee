#include "pipeline/pipeline_metrics.h"

#include <prometheus/family.h>

#include <cmath>

namespace docpipe {

namespace {

// 50 µs .. ~291 s, factor 2.5: a 4 KiB copy and a multi-gigabyte gzip both land mid-range.
// prometheus-cpp 1.0.1 has no helper for exponential buckets.
prometheus::Histogram::BucketBoundaries stage_buckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  double bound = 50e-6;
  for (int i = 0; i < 18; ++i) {
    // Rounded to 3 significant digits so the exposed `le` labels stay readable.
    double scale = std::pow(10.0, std::floor(std::log10(bound)) - 2);
    buckets.push_back(std::round(bound / scale) * scale);
    bound *= 2.5;
  }
  return buckets;
}

}  // namespace

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::kRead:
      return "read";
    case Stage::kTransform:
      return "transform";
    case Stage::kWrite:
      return "write";
  }
  return "unknown";
}

const char* unchanged_check_name(UnchangedCheck r) {
  switch (r) {
    case UnchangedCheck::kPrecheck:
      return "precheck";
    case UnchangedCheck::kHashedSame:
      return "hashed_same";
    case UnchangedCheck::kChanged:
      return "changed";
    case UnchangedCheck::kNew:
      return "new";
    case UnchangedCheck::kError:
      return "error";
  }
  return "unknown";
}

PipelineMetrics::PipelineMetrics(prometheus::Registry& registry) {
  auto& durations = prometheus::BuildHistogram()
                        .Name("docpipe_stage_duration_seconds")
                        .Help("Time a document spends being worked on in each pipeline stage")
                        .Register(registry);
  auto& depths = prometheus::BuildGauge()
                     .Name("docpipe_stage_queue_depth")
                     .Help("Documents waiting in the queue that feeds each pipeline stage")
                     .Register(registry);
  auto& in_flight = prometheus::BuildGauge()
                        .Name("docpipe_stage_in_flight")
                        .Help("Documents being worked on by each pipeline stage")
                        .Register(registry);
  const auto buckets = stage_buckets();
  for (Stage s : {Stage::kRead, Stage::kTransform, Stage::kWrite}) {
    const prometheus::Labels labels{{"stage", stage_name(s)}};
    stage_duration_[int(s)] = &durations.Add(labels, buckets);
    queue_depth_[int(s)] = &depths.Add(labels);
    in_flight_[int(s)] = &in_flight.Add(labels);
  }
  buffer_bytes_ = &prometheus::BuildGauge()
                       .Name("docpipe_buffer_bytes_in_use")
                       .Help("Bytes of document buffers held by the pipeline")
                       .Register(registry)
                       .Add({});
  budget_bytes_ = &prometheus::BuildGauge()
                       .Name("docpipe_memory_budget_bytes")
                       .Help("The pipeline's budget for document buffers (memory_budget_bytes)")
                       .Register(registry)
                       .Add({});
  auto& checks = prometheus::BuildCounter()
                     .Name("docpipe_unchanged_checks_total")
                     .Help(
                         "Documents of if_exists \"unchanged\" jobs checked against the lineage "
                         "store, by how the check ended")
                     .Register(registry);
  for (UnchangedCheck r :
       {UnchangedCheck::kPrecheck, UnchangedCheck::kHashedSame, UnchangedCheck::kChanged,
        UnchangedCheck::kNew, UnchangedCheck::kError}) {
    unchanged_checks_[int(r)] = &checks.Add({{"result", unchanged_check_name(r)}});
  }
}

}  // namespace docpipe
