#include "core/transform.h"

#include <algorithm>
#include <stdexcept>

namespace docpipe {

std::string format_field_error(const FieldError& e) {
  return e.path.empty() ? e.reason : e.path + ": " + e.reason;
}

std::string join_field_errors(const FieldErrors& errors) {
  std::string out;
  for (const FieldError& e : errors) {
    if (!out.empty()) out += "; ";
    out += format_field_error(e);
  }
  return out;
}

TransformRegistry& TransformRegistry::instance() {
  static TransformRegistry registry;
  return registry;
}

void TransformRegistry::add(TransformInfo info) {
  if (find(info.op) != nullptr) throw std::logic_error("transform registered twice: " + info.op);
  infos_.push_back(std::make_unique<TransformInfo>(std::move(info)));
}

const TransformInfo* TransformRegistry::find(std::string_view op) const {
  for (const auto& info : infos_) {
    if (info->op == op) return info.get();
  }
  return nullptr;
}

std::vector<const TransformInfo*> TransformRegistry::all() const {
  std::vector<const TransformInfo*> out;
  for (const auto& info : infos_) out.push_back(info.get());
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->op < b->op; });
  return out;
}

}  // namespace docpipe
