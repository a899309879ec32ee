#include "core/transform_chain.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace docpipe {

TransformChain::TransformChain(std::vector<std::shared_ptr<const TransformStep>> steps)
    : steps_(std::move(steps)) {}

std::vector<std::string> TransformChain::commands() const {
  std::vector<std::string> out;
  for (const auto& step : steps_) {
    for (std::string& name : step->commands()) {
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
    }
  }
  return out;
}

TransformChain::Run TransformChain::begin(const DocumentContext& doc) const {
  Run run;
  run.transforms_.reserve(steps_.size());
  for (const auto& step : steps_) run.transforms_.push_back(step->begin(doc));
  run.scratch_.resize(steps_.size());
  return run;
}

// Step `step` takes `data`, then drains whatever it has more; its output goes on to the next step
// in pieces, so that each step's output per call stays bounded however much the one before it
// expanded.
Status TransformChain::Run::feed(size_t step, std::string_view data, const Sink& sink) {
  DocumentTransform& t = *transforms_[step];
  std::string& next = scratch_[step];
  bool first = true;
  do {
    next.clear();
    Status st = t.update(first ? data : std::string_view(), next);
    if (!st) return st;
    first = false;
    st = pass_on(step + 1, next, sink);
    if (!st) return st;
  } while (t.has_more());
  return ok();
}

Status TransformChain::Run::pass_on(size_t step, std::string_view data, const Sink& sink) {
  if (step == transforms_.size()) return data.empty() ? ok() : sink(data);
  for (size_t off = 0; off < data.size(); off += kPieceBytes) {
    Status st = feed(step, data.substr(off, kPieceBytes), sink);
    if (!st) return st;
  }
  return ok();
}

Status TransformChain::Run::update(std::string_view in, const Sink& sink) {
  return pass_on(0, in, sink);
}

Status TransformChain::Run::finish(const Sink& sink) {
  // Step i's tail output still has to pass through steps i+1.. before they finish in turn.
  std::string tail;
  for (size_t i = 0; i < transforms_.size(); ++i) {
    do {
      tail.clear();
      Status st = transforms_[i]->finish(tail);
      if (!st) return st;
      st = pass_on(i + 1, tail, sink);
      if (!st) return st;
    } while (transforms_[i]->has_more());
  }
  return ok();
}

Status TransformChain::Run::update(std::string_view in, std::string& out) {
  return update(in, [&out](std::string_view data) {
    out.append(data);
    return ok();
  });
}

Status TransformChain::Run::finish(std::string& out) {
  return finish([&out](std::string_view data) {
    out.append(data);
    return ok();
  });
}

std::string TransformChain::Run::metadata() const {
  std::string only;
  nlohmann::json merged;
  for (const std::unique_ptr<DocumentTransform>& t : transforms_) {
    std::string m = t->metadata();
    if (m.empty()) continue;
    if (only.empty() && merged.is_null()) {
      only = std::move(m);
      continue;
    }
    if (merged.is_null()) merged = nlohmann::json::parse(only, nullptr, false);
    nlohmann::json next = nlohmann::json::parse(m, nullptr, false);
    if (merged.is_object() && next.is_object()) merged.update(next);
  }
  if (merged.is_null()) return only;
  return merged.is_object() ? merged.dump() : std::string();
}

}  // namespace docpipe
