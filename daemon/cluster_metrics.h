#pragma once
// docpipe_cluster_*: what a cluster node adds to /metrics (docs/design.md "Several nodes").
// Every node exports its own; Prometheus tells them apart by instance.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace docpipe {

struct ClusterMetrics {
  explicit ClusterMetrics(prometheus::Registry& registry);

  prometheus::Gauge* connected;              // 1 while connected to a NATS server
  prometheus::Counter* reconnects;           // connections re-established
  prometheus::Gauge* messages_held;          // document messages this node holds unacked
  prometheus::Gauge* max_ack_pending;        // this node's cap on them
  prometheus::Gauge* messages_pending;       // in the stream, not yet delivered to any node
  prometheus::Gauge* messages_ack_pending;   // delivered to some node, not yet acked
  prometheus::Counter* acks;                 // docpipe_cluster_acks_total{result="ack"}
  prometheus::Counter* naks;                 // {result="nak"}
  prometheus::Counter* terms;                // {result="term"}
  prometheus::Counter* redeliveries;         // messages received delivered more than once
  prometheus::Counter* outcomes_published;   // outcomes this node published
  prometheus::Gauge* jobs_coordinated;       // jobs this node coordinates
  prometheus::Counter* takeovers;            // jobs this node took over from a silent node
  prometheus::Gauge* nodes;                  // nodes seen alive (heartbeat in the last 3 x 2 s)
};

}  // namespace docpipe
