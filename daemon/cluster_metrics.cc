#include "daemon/cluster_metrics.h"

#include <string>

namespace docpipe {

namespace {

prometheus::Gauge* gauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Counter* counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

ClusterMetrics::ClusterMetrics(prometheus::Registry& r) {
  connected = gauge(r, "docpipe_cluster_connected", "1 while this node is connected to NATS");
  reconnects = counter(r, "docpipe_cluster_reconnects_total",
                       "Connections to NATS re-established after a loss");
  messages_held = gauge(r, "docpipe_cluster_messages_held",
                        "Document messages this node holds and has not yet acknowledged");
  max_ack_pending = gauge(r, "docpipe_cluster_max_ack_pending",
                          "Document messages this node may hold at once");
  messages_pending = gauge(r, "docpipe_cluster_messages_pending",
                           "Document messages in the stream not yet delivered to a node");
  messages_ack_pending = gauge(r, "docpipe_cluster_messages_ack_pending",
                               "Document messages delivered to some node and not yet acknowledged");
  auto& acks_family = prometheus::BuildCounter()
                          .Name("docpipe_cluster_acks_total")
                          .Help("Document messages this node settled, by how: ack (done), nak "
                                "(handed back for another attempt), term (failed for good)")
                          .Register(r);
  acks = &acks_family.Add({{"result", "ack"}});
  naks = &acks_family.Add({{"result", "nak"}});
  terms = &acks_family.Add({{"result", "term"}});
  redeliveries = counter(r, "docpipe_cluster_redeliveries_total",
                         "Document messages this node received that were delivered before");
  outcomes_published = counter(r, "docpipe_cluster_outcomes_published_total",
                               "Document outcomes this node published to their coordinators");
  jobs_coordinated = gauge(r, "docpipe_cluster_jobs_coordinated", "Jobs this node coordinates");
  takeovers = counter(r, "docpipe_cluster_takeovers_total",
                      "Jobs this node took over from a coordinator that went silent");
  nodes = gauge(r, "docpipe_cluster_nodes", "Cluster nodes seen alive");
}

}  // namespace docpipe
