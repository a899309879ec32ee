#include "daemon/command_pool_metrics.h"

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "core/transforms/command_pools.h"

namespace docpipe {
namespace {

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void add(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
         double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

class CommandPoolCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<CommandPoolStats> stats = CommandPools::instance().stats();
    if (stats.empty()) return {};
    using prometheus::MetricType;
    auto processes = family("docpipe_command_pool_processes",
                            "Exec pool processes, by command and state", MetricType::Gauge);
    auto recycles = family("docpipe_command_pool_recycles_total",
                           "Exec pool processes ended, by command and reason", MetricType::Counter);
    auto starts = family("docpipe_command_pool_starts_total",
                         "Exec pool process starts, by command and result (ok: it said ready)",
                         MetricType::Counter);
    auto documents =
        family("docpipe_command_pool_documents_total",
               "Documents through an exec pool, by command and outcome", MetricType::Counter);
    for (const CommandPoolStats& s : stats) {
      const std::string& c = s.command;
      const PoolStateCounts& p = s.processes;
      for (auto [state, n] : {std::pair{"starting", p.starting},
                              {"idle", p.idle},
                              {"busy", p.busy},
                              {"checking", p.checking},
                              {"stopping", p.stopping}}) {
        add(processes, {{"command", c}, {"state", state}}, n);
      }
      for (int i = 0; i < kRecycleReasons; ++i) {
        add(recycles, {{"command", c}, {"reason", recycle_reason_name(RecycleReason(i))}},
            static_cast<double>(s.recycles[i]));
      }
      add(starts, {{"command", c}, {"result", "ok"}}, static_cast<double>(s.starts));
      add(starts, {{"command", c}, {"result", "failed"}}, static_cast<double>(s.start_failures));
      for (int i = 0; i < kPoolDocumentOutcomes; ++i) {
        add(documents, {{"command", c}, {"outcome", pool_outcome_name(PoolDocumentOutcome(i))}},
            static_cast<double>(s.documents[i]));
      }
    }
    return {processes, recycles, starts, documents};
  }
};

}  // namespace

std::shared_ptr<prometheus::Collectable> make_command_pool_collector() {
  return std::make_shared<CommandPoolCollector>();
}

}  // namespace docpipe
