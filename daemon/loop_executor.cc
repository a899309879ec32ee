#include "daemon/loop_executor.h"

#include <utility>

namespace docpipe {

namespace {

struct Work {
  uv_work_t req;
  std::function<void()> work;
  std::function<void()> after;
};

}  // namespace

void LoopExecutor::run(std::function<void()> work, std::function<void()> after) {
  auto* w = new Work{{}, std::move(work), std::move(after)};
  w->req.data = w;
  int rc = uv_queue_work(
      loop_, &w->req, [](uv_work_t* req) { static_cast<Work*>(req->data)->work(); },
      [](uv_work_t* req, int) {
        auto* w = static_cast<Work*>(req->data);
        w->after();
        delete w;
      });
  if (rc != 0) {  // never happens with a valid loop; run inline rather than lose the work
    w->work();
    w->after();
    delete w;
  }
}

}  // namespace docpipe
