#include "core/transform_chain.h"

namespace docpipe {

TransformChain::TransformChain(std::vector<std::shared_ptr<const TransformStep>> steps)
    : steps_(std::move(steps)) {}

TransformChain::Run TransformChain::begin(const DocumentContext& doc) const {
  Run run;
  run.transforms_.reserve(steps_.size());
  for (const auto& step : steps_) run.transforms_.push_back(step->begin(doc));
  run.scratch_.resize(steps_.size());
  return run;
}

Status TransformChain::Run::feed(size_t step, std::string_view data, std::string& out) {
  for (; step < transforms_.size(); ++step) {
    std::string& next = scratch_[step];
    next.clear();
    Status st = transforms_[step]->update(data, next);
    if (!st) return st;
    data = next;
  }
  out.append(data);
  return ok();
}

Status TransformChain::Run::update(std::string_view in, std::string& out) { return feed(0, in, out); }

Status TransformChain::Run::finish(std::string& out) {
  // Step i's tail output still has to pass through steps i+1.. before they finish in turn.
  for (size_t i = 0; i < transforms_.size(); ++i) {
    std::string tail;
    Status st = transforms_[i]->finish(tail);
    if (!st) return st;
    st = feed(i + 1, tail, out);
    if (!st) return st;
  }
  return ok();
}

}  // namespace docpipe
