// libFuzzer target for the control-socket request parser (daemon/control_request.h): any bytes,
// as one request line, must give a request or an error, never a crash, a hang or a blow-up.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/control_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  docpipe::Result<docpipe::ControlRequest> r = docpipe::parse_control_request(line);
  if (r) {
    // What the daemon relies on: a submit carries a job object's text, cancel an id.
    if (r->op == docpipe::ControlRequest::Op::kSubmit && r->job_text.empty()) __builtin_trap();
    if (r->op == docpipe::ControlRequest::Op::kCancel && r->id.empty()) __builtin_trap();
  } else if (r.error().message.empty() || r.error().message.size() > 256) {
    __builtin_trap();  // every refusal says why, in a bounded reply
  }
  return 0;
}
