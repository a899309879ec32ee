// WatchFolder on a real libuv loop and a real temp folder: renamed-in files are taken at once,
// files written in place only after settle_ms of stability, and each is reported once.

#include "daemon/watch_folder.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <prometheus/registry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using docpipe::WatchFolder;

namespace {

struct Reported {
  std::string name;
  uint64_t at_ms;
};

// A loop, a temp "incoming" folder and a WatchFolder, plus helpers to act at given times.
class WatchFixture {
 public:
  explicit WatchFixture(int64_t settle_ms, int64_t rescan_ms = 60000,
                        docpipe::DaemonMetrics* metrics = nullptr) {
    char tmpl[] = "/tmp/docpipe-watch-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    incoming_ = root_ + "/incoming";
    fs::create_directories(incoming_);
    uv_loop_init(&loop_);
    watch_ = std::make_unique<WatchFolder>(&loop_, incoming_, settle_ms, rescan_ms, metrics,
                                           [this](const std::string& name) {
                                             reported_.push_back({name, uv_now(&loop_)});
                                             if (on_report_) on_report_(name);
                                           });
  }

  ~WatchFixture() { fs::remove_all(root_); }

  int start() { return watch_->start(); }

  // Runs `fn` on the loop after `delay_ms`.
  void at(uint64_t delay_ms, std::function<void()> fn) {
    auto* t = new Timer{{}, std::move(fn)};
    t->handle.data = t;
    uv_timer_init(&loop_, &t->handle);
    uv_timer_start(
        &t->handle,
        [](uv_timer_t* h) {
          auto* t = static_cast<Timer*>(h->data);
          t->fn();
          uv_close(reinterpret_cast<uv_handle_t*>(h),
                   [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
        },
        delay_ms, 0);
  }

  // Runs the loop until `done()` holds or `deadline_ms` passes, then closes everything and checks
  // that the loop closes cleanly.
  void run_until(std::function<bool()> done, uint64_t deadline_ms) {
    // A ticking timer bounds each UV_RUN_ONCE, so the deadline is checked even when idle.
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 10, 10);
    uint64_t start = uv_now(&loop_);
    while (!done() && uv_now(&loop_) - start < deadline_ms) {
      uv_run(&loop_, UV_RUN_ONCE);
      uv_update_time(&loop_);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  void finish() {
    watch_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }

  // Writes a file elsewhere and renames it into incoming/ at once, as producers do: the rename
  // follows the write within the same clock tick, so ctime == mtime.
  void drop(const std::string& name, const std::string& content) {
    std::string tmp = root_ + "/" + name + ".tmp";
    write_file(tmp, content, O_TRUNC);
    REQUIRE(::rename(tmp.c_str(), (incoming_ + "/" + name).c_str()) == 0);
  }

  static void write_file(const std::string& path, const std::string& content, int mode) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | mode, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    ::close(fd);
  }

  uv_loop_t loop_{};
  std::string root_, incoming_;
  std::unique_ptr<WatchFolder> watch_;
  std::vector<Reported> reported_;
  std::function<void(const std::string&)> on_report_;

 private:
  struct Timer {
    uv_timer_t handle;
    std::function<void()> fn;
  };
};

}  // namespace

TEST_CASE("watch folder: a job file renamed into incoming is reported at once") {
  const int64_t settle = 5000;
  WatchFixture f(settle);
  REQUIRE(f.start() == 0);
  uint64_t dropped_at = 0;
  f.at(20, [&] {
    dropped_at = uv_now(&f.loop_);
    f.drop("job.json", R"({"id":"a"})");
  });
  f.run_until([&] { return !f.reported_.empty(); }, 3 * settle);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "job.json");
  // Taken on IN_MOVED_TO, not after settle_ms of quiet (nor on a ctime > mtime guess, which
  // fails when the write and the rename share a clock tick).
  CHECK(f.reported_[0].at_ms - dropped_at < 500);
  f.finish();
}

TEST_CASE("watch folder: a file renamed over a name the intake holds is reported after forget") {
  WatchFixture f(/*settle_ms=*/5000);
  int reports = 0;
  f.on_report_ = [&](const std::string&) { ++reports; };
  REQUIRE(f.start() == 0);
  f.at(20, [&] { f.drop("twice.json", "{}"); });
  f.run_until([&] { return reports == 1; }, 3000);
  REQUIRE(reports == 1);
  // While the intake works on the first file, a producer renames a second one over the name.
  f.drop("twice.json", R"({"id":"second"})");
  f.run_until([] { return false; }, 200);
  CHECK(reports == 1);  // held by the intake: not reported twice at once
  uint64_t forgot_at = uv_now(&f.loop_);
  f.watch_->forget("twice.json");
  f.run_until([&] { return reports == 2; }, 3000);
  REQUIRE(reports == 2);
  CHECK(f.reported_[1].at_ms - forgot_at < 500);
  f.finish();
}

TEST_CASE("watch folder: a file written in place is reported once, after settle_ms of quiet") {
  const int64_t settle = 300;
  WatchFixture f(settle);
  REQUIRE(f.start() == 0);
  std::string path = f.incoming_ + "/slow.json";
  uint64_t last_write = 0;
  const char* parts[] = {"{\"id\":", "\"slow\",", "\"x\":", "1}"};
  for (int i = 0; i < 4; ++i) {
    f.at(50 + 150 * i, [&, i] {
      WatchFixture::write_file(path, parts[i], O_APPEND);
      last_write = uv_now(&f.loop_);
    });
  }
  f.run_until([&] { return !f.reported_.empty(); }, 5000);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "slow.json");
  CHECK(f.reported_[0].at_ms >= last_write + settle);
  // Still exactly once: keep the loop running a little longer while the file sits there.
  f.run_until([] { return false; }, 2 * settle);
  CHECK(f.reported_.size() == 1);
  f.finish();
}

TEST_CASE("watch folder: hidden and non-json names are ignored, existing files found at start") {
  WatchFixture f(/*settle_ms=*/50);
  WatchFixture::write_file(f.incoming_ + "/.hidden.json", "{}", O_TRUNC);
  WatchFixture::write_file(f.incoming_ + "/notes.txt", "{}", O_TRUNC);
  WatchFixture::write_file(f.incoming_ + "/early.json", "{}", O_TRUNC);
  REQUIRE(f.start() == 0);
  f.run_until([&] { return !f.reported_.empty(); }, 5000);
  f.run_until([] { return false; }, 300);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "early.json");
  f.finish();
}

TEST_CASE("watch folder: after forget, a new file with the same name is reported again") {
  WatchFixture f(/*settle_ms=*/10000);
  f.on_report_ = [&](const std::string& name) {
    // What the intake does: move the file away, then forget the name.
    fs::remove(f.incoming_ + "/" + name);
    f.watch_->forget(name);
  };
  REQUIRE(f.start() == 0);
  f.at(20, [&] { f.drop("again.json", "{}"); });
  f.run_until([&] { return f.reported_.size() == 1; }, 5000);
  REQUIRE(f.reported_.size() == 1);
  f.at(20, [&] { f.drop("again.json", "{}"); });
  f.run_until([&] { return f.reported_.size() == 2; }, 5000);
  CHECK(f.reported_.size() == 2);
  f.finish();
}

TEST_CASE("watch folder: the periodic rescan finds a file the watch missed, then watches again") {
  // The file dropped into the replacement folder has no event; only the rescan can find it, and
  // nothing says it is complete, so it takes the settle path.
  const int64_t settle = 1000;
  WatchFixture f(settle, /*rescan_ms=*/100);
  REQUIRE(f.start() == 0);
  // Replace incoming/ by a new folder at the same path: inotify keeps watching the old inode.
  uint64_t dropped_at = 0;
  f.at(20, [&] {
    fs::rename(f.incoming_, f.root_ + "/old-incoming");
    fs::create_directories(f.incoming_);
    f.drop("late.json", "{}");
    dropped_at = uv_now(&f.loop_);
  });
  f.run_until([&] { return !f.reported_.empty(); }, 5000);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "late.json");
  CHECK(f.reported_[0].at_ms - dropped_at >= static_cast<uint64_t>(settle));
  // The rescan watches the new folder: a file renamed into it now is taken at once again.
  uint64_t renamed_at = 0;
  f.at(20, [&] {
    f.drop("next.json", "{}");
    renamed_at = uv_now(&f.loop_);
  });
  f.run_until([&] { return f.reported_.size() == 2; }, 5000);
  REQUIRE(f.reported_.size() == 2);
  CHECK(f.reported_[1].name == "next.json");
  CHECK(f.reported_[1].at_ms - renamed_at < static_cast<uint64_t>(settle) / 2);
  f.finish();
}

TEST_CASE("watch folder: a symlink, FIFO or folder named *.json is reported at once, unfollowed") {
  // The intake records such names in rejected/; ignoring them would leave them there forever.
  WatchFixture f(/*settle_ms=*/10000);
  REQUIRE(::symlink("/etc/hostname", (f.incoming_ + "/early-link.json").c_str()) == 0);
  uv_update_time(&f.loop_);
  const uint64_t started_at = uv_now(&f.loop_);
  REQUIRE(f.start() == 0);
  uint64_t made_at = 0;
  f.at(20, [&] {
    made_at = uv_now(&f.loop_);
    REQUIRE(::symlink("/etc/hostname", (f.incoming_ + "/link.json").c_str()) == 0);
    REQUIRE(::mkfifo((f.incoming_ + "/fifo.json").c_str(), 0644) == 0);
    REQUIRE(::mkdir((f.incoming_ + "/folder.json").c_str(), 0755) == 0);
  });
  f.run_until([&] { return f.reported_.size() == 4; }, 5000);
  std::set<std::string> names;
  for (const Reported& r : f.reported_) {
    names.insert(r.name);
    CHECK(r.at_ms - (r.name == "early-link.json" ? started_at : made_at) < 1000);
  }
  CHECK(names == std::set<std::string>{"early-link.json", "link.json", "fifo.json", "folder.json"});
  f.finish();
}

TEST_CASE("watch folder: an inotify queue overflow rescans at once and is counted") {
  prometheus::Registry registry;
  docpipe::DaemonMetrics metrics(registry);
  const int64_t settle = 200;
  // The periodic rescan is an hour away: only the overflow's own rescan can find the file.
  WatchFixture f(settle, /*rescan_ms=*/3600000, &metrics);
  REQUIRE(f.start() == 0);
  f.run_until([] { return false; }, 50);  // the start-up scan is done
  CHECK(metrics.intake_overflows().Value() == 0);

  // With the loop not reading, fill this watch's kernel queue past its limit (each created file
  // queues IN_CREATE and IN_CLOSE_WRITE), then rename a job file in: its event is lost.
  long max_events = 16384;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_events;
  REQUIRE(max_events > 0);
  REQUIRE(max_events <= 1000000);
  for (long i = 0; i < max_events; ++i) {
    std::string path = f.incoming_ + "/filler-" + std::to_string(i) + ".txt";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    ::close(fd);
  }
  f.drop("lost.json", "{}");
  uv_update_time(&f.loop_);
  uint64_t resumed_at = uv_now(&f.loop_);
  f.run_until([&] { return !f.reported_.empty(); }, 10000);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "lost.json");
  // Found by the rescan, so it took the settle path; not an hour.
  CHECK(f.reported_[0].at_ms - resumed_at < static_cast<uint64_t>(settle) + 3000);
  CHECK(metrics.intake_overflows().Value() == 1);
  f.finish();
}
