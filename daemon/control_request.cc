#include "daemon/control_request.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "daemon/intake_pause.h"

namespace docpipe {

std::string quote_client_text(std::string_view text, size_t max_chars) {
  std::string out;
  for (char c : text.substr(0, max_chars)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7f && c != '"' && c != '\\' ? c : '?';
  }
  if (text.size() > max_chars) out += "...";
  return "\"" + out + "\"";
}

namespace {

using nlohmann::json;

constexpr size_t kMaxQuotedOp = 32;

Error invalid(std::string message) { return make_error(ErrorCode::kInvalidArgument, message); }

Result<ControlRequest> parse_submit(const json& request,
                                    ControlRequest::Op op = ControlRequest::Op::kSubmit) {
  ControlRequest r;
  r.op = op;
  auto job = request.find("job");
  if (job == request.end() || !job->is_object()) {
    return invalid("submit needs \"job\": the job as a JSON object");
  }
  if (auto b = request.find("base_dir"); b != request.end()) {
    if (!b->is_string() || b->get_ref<const std::string&>().empty() ||
        b->get_ref<const std::string&>()[0] != '/' ||
        b->get_ref<const std::string&>().find('\0') != std::string::npos) {
      return invalid("submit: \"base_dir\" must be an absolute path");
    }
    r.base_dir = b->get<std::string>();
  }
  // Compact: indentation would multiply the text by the nesting depth.
  r.job_text = job->dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

// The string member `key`: "" when absent or null; nullopt when it is not a non-empty string.
std::optional<std::string> non_empty_string(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end() || it->is_null()) return std::string();
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

Result<ControlRequest> parse_control_request(std::string_view line) {
  if (line.size() > kMaxControlRequestBytes) {
    return make_error(ErrorCode::kTooLarge, "request too large: over " +
                                                std::to_string(kMaxControlRequestBytes) + " bytes");
  }
  if (json_max_depth(line, kMaxControlRequestDepth) > kMaxControlRequestDepth) {
    return invalid("request refused: nested deeper than " +
                   std::to_string(kMaxControlRequestDepth) + " levels");
  }
  json request = json::parse(line, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    return invalid("malformed request: expected one JSON object per line");
  }
  auto op = request.find("op");
  if (op == request.end() || !op->is_string()) {
    return invalid(
        "request needs a string \"op\": submit, status, cancel, retry, list, pause, resume, "
        "which or plan");
  }
  const std::string& name = op->get_ref<const std::string&>();
  if (name == "submit") return parse_submit(request);
  if (name == "plan") {
    Result<ControlRequest> r = parse_submit(request, ControlRequest::Op::kPlan);
    if (!r) return invalid("plan" + r.error().message.substr(std::string_view("submit").size()));
    r->list = kDefaultPlanListed;
    if (auto l = request.find("list"); l != request.end()) {
      if (!l->is_number_unsigned() || l->get<uint64_t>() > kMaxPlanListed) {
        return invalid("plan: \"list\" must be an integer from 0 to " +
                       std::to_string(kMaxPlanListed));
      }
      r->list = l->get<size_t>();
    }
    return r;
  }
  if (name == "which") {
    ControlRequest r;
    r.op = ControlRequest::Op::kWhich;
    auto p = request.find("path");
    if (p == request.end() || !p->is_string() || p->get_ref<const std::string&>().empty() ||
        p->get_ref<const std::string&>()[0] != '/' ||
        p->get_ref<const std::string&>().size() > 4096 ||
        p->get_ref<const std::string&>().find('\0') != std::string::npos) {
      return invalid("which needs \"path\": the output file's absolute path (at most 4096 bytes)");
    }
    r.path = p->get<std::string>();
    return r;
  }
  ControlRequest r;
  if (name == "list") {
    r.op = ControlRequest::Op::kList;
    return r;
  }
  if (name == "status") {
    r.op = ControlRequest::Op::kStatus;
    auto id = request.find("id");
    if (id == request.end() || id->is_null()) return r;
    if (!id->is_string() || id->get_ref<const std::string&>().empty()) {
      return invalid("status: \"id\" must be a non-empty string");
    }
    r.id = id->get<std::string>();
    return r;
  }
  if (name == "cancel" || name == "retry") {
    const bool retry = name == "retry";
    r.op = retry ? ControlRequest::Op::kRetry : ControlRequest::Op::kCancel;
    std::optional<std::string> id = non_empty_string(request, "id");
    if (!id || id->empty()) {
      return invalid(retry ? "retry needs \"id\": the finished job's id"
                           : "cancel needs \"id\": the job id");
    }
    r.id = std::move(*id);
    if (!retry) return r;
    std::optional<std::string> new_id = non_empty_string(request, "new_id");
    if (!new_id) return invalid("retry: \"new_id\" must be a non-empty string");
    r.new_id = std::move(*new_id);
    return r;
  }
  if (name == "pause") {
    r.op = ControlRequest::Op::kPause;
    auto reason = request.find("reason");
    if (reason == request.end() || reason->is_null()) return r;
    if (!reason->is_string()) return invalid("pause: \"reason\" must be a string");
    r.reason = pause_reason(reason->get_ref<const std::string&>());
    return r;
  }
  if (name == "resume") {
    r.op = ControlRequest::Op::kResume;
    return r;
  }
  return invalid("unknown op " + quote_client_text(name, kMaxQuotedOp) +
                 ": expected submit, status, cancel, retry, list, pause, resume, which or "
                 "plan");
}

}  // namespace docpipe
