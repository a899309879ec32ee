// UvHandle on a real libuv loop: open -> closing -> closed, with the close callback telling the
// owner (which may free itself there, as a control connection does); a failed open stays
// unopened and calls nothing back; a second close() is harmless; a closed handle opens again;
// destroying a handle that is open or closing aborts. Every test ends with uv_loop_close() == 0.

#include "daemon/uv_handle.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <string>

namespace docpipe {
namespace {

using Timer = UvHandle<uv_timer_t>;

// What a handle owner looks like: it learns of the close through the callback it passed.
struct Owner {
  Timer timer;
  int closed_calls = 0;
  int fired = 0;
};

void close_loop(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

TEST_CASE("uv handle: open, closing, closed, and the close callback tells the owner") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Owner owner;
  CHECK(owner.timer.state() == Timer::State::kUnopened);
  REQUIRE(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) == 0);
  CHECK(owner.timer.state() == Timer::State::kOpen);
  CHECK(owner.timer.is_open());
  CHECK(owner.timer.in_use());
  // Callbacks find their owner through the handle libuv gives them.
  uv_timer_start(
      owner.timer.get(), [](uv_timer_t* t) { ++Timer::owner_of<Owner>(t)->fired; }, 0, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(owner.fired == 1);
  CHECK(Timer::owner_of<Owner>(owner.timer.base()) == &owner);

  owner.timer.close([&] { ++owner.closed_calls; });
  CHECK(owner.timer.state() == Timer::State::kClosing);
  CHECK_FALSE(owner.timer.is_open());
  CHECK(owner.timer.in_use());     // libuv holds it until the close callback
  CHECK(owner.closed_calls == 0);  // libuv calls back on the next loop turn, never inline
  close_loop(&loop);
  CHECK(owner.timer.state() == Timer::State::kClosed);
  CHECK_FALSE(owner.timer.in_use());
  CHECK(owner.closed_calls == 1);
}

TEST_CASE("uv handle: a failed open stays unopened and close() calls nothing back") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  UvHandle<uv_poll_t> poll;
  int closed_calls = 0;
  // -1 is no descriptor: libuv refuses it before it registers the handle with the loop.
  int rc = poll.open(&closed_calls, [&](uv_poll_t* p) { return uv_poll_init(&loop, p, -1); });
  CHECK(rc < 0);
  CHECK(poll.state() == UvHandle<uv_poll_t>::State::kUnopened);
  poll.close([&] { ++closed_calls; });
  CHECK(poll.state() == UvHandle<uv_poll_t>::State::kUnopened);
  close_loop(&loop);
  CHECK(closed_calls == 0);
}

TEST_CASE("uv handle: a second close() is harmless and the first callback runs once") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Owner owner;
  REQUIRE(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) == 0);
  int second_calls = 0;
  owner.timer.close([&] { ++owner.closed_calls; });
  owner.timer.close([&] { ++second_calls; });
  close_loop(&loop);
  CHECK(owner.closed_calls == 1);
  CHECK(second_calls == 0);
  owner.timer.close([&] { ++second_calls; });  // closed already
  CHECK(second_calls == 0);
  CHECK(owner.timer.state() == Timer::State::kClosed);
}

TEST_CASE("uv handle: the owner may free itself in the close callback") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  // Like a control connection: nothing else holds it, it deletes itself once closed.
  auto* owner = new Owner;
  bool freed = false;
  REQUIRE(owner->timer.open(owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) == 0);
  owner->timer.close([owner, &freed] {
    delete owner;
    freed = true;
  });
  close_loop(&loop);
  CHECK(freed);
}

TEST_CASE("uv handle: a closed handle opens again and works") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Owner owner;
  for (int round = 0; round < 2; ++round) {
    REQUIRE(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) == 0);
    CHECK(owner.timer.is_open());
    uv_timer_start(
        owner.timer.get(), [](uv_timer_t* t) { ++Timer::owner_of<Owner>(t)->fired; }, 0, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    owner.timer.close([&] { ++owner.closed_calls; });
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(owner.timer.state() == Timer::State::kClosed);
  }
  CHECK(owner.fired == 2);
  CHECK(owner.closed_calls == 2);
  // An open or closing handle is not opened twice.
  REQUIRE(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) == 0);
  CHECK(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) ==
        UV_EALREADY);
  owner.timer.close();
  CHECK(owner.timer.open(&owner, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); }) ==
        UV_EALREADY);
  close_loop(&loop);
  CHECK(owner.timer.state() == Timer::State::kClosed);
}

// Runs `body` in a forked child and returns its wait status; the child's stderr comes back in
// `err`. The child never returns into doctest.
int in_child(void (*body)(), std::string& err) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // doctest's crash handler would report the abort as this test's failure: the default.
    std::signal(SIGABRT, SIG_DFL);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    body();
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return status;
}

TEST_CASE("uv handle: destroying an open or closing handle aborts") {
  std::string err;
  int status = in_child(
      [] {
        uv_loop_t loop;
        uv_loop_init(&loop);
        auto timer = std::make_unique<Timer>();
        timer->open(nullptr, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); });
        timer.reset();  // the loop would still reach it
      },
      err);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
  CHECK(err.find("(timer) was destroyed while open") != std::string::npos);

  err.clear();
  status = in_child(
      [] {
        uv_loop_t loop;
        uv_loop_init(&loop);
        auto timer = std::make_unique<Timer>();
        timer->open(nullptr, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); });
        timer->close();
        timer.reset();  // before the loop ran the close callback
      },
      err);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
  CHECK(err.find("(timer) was destroyed while closing") != std::string::npos);

  // Unopened and closed handles may go.
  err.clear();
  status = in_child(
      [] {
        uv_loop_t loop;
        uv_loop_init(&loop);
        { Timer unopened; }
        auto timer = std::make_unique<Timer>();
        timer->open(nullptr, [&](uv_timer_t* t) { return uv_timer_init(&loop, t); });
        timer->close();
        uv_run(&loop, UV_RUN_DEFAULT);
        timer.reset();
        ::_exit(uv_loop_close(&loop) == 0 ? 0 : 3);
      },
      err);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(err.empty());
}

}  // namespace
}  // namespace docpipe
