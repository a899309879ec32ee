#pragma once
// One lifecycle for every libuv handle the daemon owns (Node's handle_wrap.cc): unopened -> open
// -> closing -> closed. libuv may touch a handle until its close callback has run, so an owner
// learns that its handle is closed from the `on_closed` callback it passes to close(), and may
// free itself only then (a connection deletes itself there). Destroying a handle that is open or
// closing is a lifetime bug that would let the loop write into freed memory: it aborts.
//
//   UvHandle<uv_timer_t> timer_;
//   timer_.open(this, [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
//   uv_timer_start(timer_.get(),
//                  [](uv_timer_t* t) { UvHandle<uv_timer_t>::owner_of<Foo>(t)->tick(); }, ...);
//   timer_.close([this] { on_timer_closed(); });
//
// The embedded handle's `data` belongs to this helper (it points back here); callbacks find their
// owner through owner_of(). Loop thread only.

#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>

namespace docpipe {

template <typename T>
class UvHandle {
 public:
  enum class State { kUnopened, kOpen, kClosing, kClosed };
  using ClosedFn = std::function<void()>;

  UvHandle() = default;
  ~UvHandle() {
    if (in_use()) {
      std::fprintf(stderr, "docpipe: a libuv handle (%s) was destroyed while %s\n",
                   uv_handle_type_name(uv_handle_get_type(base())),
                   state_ == State::kOpen ? "open" : "closing");
      std::abort();
    }
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Initialises the embedded handle with `init` (e.g. uv_timer_init(loop, h)); returns its result.
  // On failure the handle stays unopened: libuv calls nothing back, and there is nothing to close.
  template <typename Init>
  int open(void* owner, Init&& init) {
    if (state_ != State::kUnopened && state_ != State::kClosed) return UV_EALREADY;
    handle_ = T{};
    int rc = std::forward<Init>(init)(&handle_);
    if (rc != 0) return rc;
    handle_.data = this;
    owner_ = owner;
    state_ = State::kOpen;
    return 0;
  }

  // Starts closing; `on_closed` runs on the loop once libuv is done with the handle (the owner may
  // free itself there). A handle that is not open calls nothing back: it is already closed, or its
  // first close() owns the callback.
  void close(ClosedFn on_closed = nullptr) {
    if (state_ != State::kOpen) return;
    state_ = State::kClosing;
    on_closed_ = std::move(on_closed);
    uv_close(base(), &UvHandle::closed);
  }

  T* get() { return &handle_; }
  const T* get() const { return &handle_; }
  uv_handle_t* base() { return reinterpret_cast<uv_handle_t*>(&handle_); }
  const uv_handle_t* base() const { return reinterpret_cast<const uv_handle_t*>(&handle_); }
  State state() const { return state_; }
  bool is_open() const { return state_ == State::kOpen; }
  // Open or closing: libuv may still touch the handle, so it must not be freed yet.
  bool in_use() const { return state_ == State::kOpen || state_ == State::kClosing; }

  // The owner given to open(), from the handle a libuv callback receives.
  template <typename Owner>
  static Owner* owner_of(T* handle) {
    return static_cast<Owner*>(static_cast<UvHandle*>(handle->data)->owner_);
  }
  template <typename Owner>
  static Owner* owner_of(uv_handle_t* handle) {
    return static_cast<Owner*>(static_cast<UvHandle*>(handle->data)->owner_);
  }

 private:
  static void closed(uv_handle_t* handle) {
    auto* self = static_cast<UvHandle*>(handle->data);
    self->state_ = State::kClosed;
    // Moved out first: the callback may destroy the owner, and this helper with it.
    ClosedFn done = std::move(self->on_closed_);
    self->on_closed_ = nullptr;
    if (done) done();
  }

  T handle_{};
  void* owner_ = nullptr;
  State state_ = State::kUnopened;
  ClosedFn on_closed_;
};

}  // namespace docpipe
