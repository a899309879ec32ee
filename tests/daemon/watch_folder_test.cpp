// WatchFolder on a real libuv loop and a real temp folder, with settling measured on a FakeClock:
// renamed-in files are taken at once, files written in place only after settle_ms of stability,
// and each is reported once. The loop blocks on its events (inotify, stats, timers); no test
// waits on the wall clock for a decision.

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
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/support/fake_clock.h"
#include "tests/support/uv_run_until.h"

namespace fs = std::filesystem;
using docpipe::WatchFolder;
using std::chrono::milliseconds;
using TimePoint = docpipe::Clock::time_point;

namespace {

struct Reported {
  std::string name;
  TimePoint at;  // by the fake clock
};

// A loop, a temp "incoming" folder, a fake clock and a WatchFolder on them.
class WatchFixture {
 public:
  explicit WatchFixture(int64_t settle_ms, int64_t rescan_ms = 3600000,
                        docpipe::DaemonMetrics* metrics = nullptr) {
    char tmpl[] = "/tmp/docpipe-watch-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    incoming_ = root_ + "/incoming";
    fs::create_directories(incoming_);
    uv_loop_init(&loop_);
    watch_ = std::make_unique<WatchFolder>(
        &loop_, incoming_, settle_ms, rescan_ms, metrics,
        [this](const std::string& name) {
          reported_.push_back({name, clock_.now()});
          if (on_report_) on_report_(name);
        },
        clock_);
  }

  ~WatchFixture() { fs::remove_all(root_); }

  int start() { return watch_->start(); }

  // Turns the loop until `done()` holds (see uv_run_until); a wait that would hang fails.
  bool run_until(const std::function<bool()>& done) {
    bool ok = docpipe::test::uv_run_until(&loop_, done);
    CHECK(ok);
    return ok;
  }

  // Reads what the kernel queued for the watch so far (an event is queued by the time the
  // writing call returns) and waits until each is decided: no scan or stat in flight.
  void settle_loop() {
    uv_run(&loop_, UV_RUN_NOWAIT);
    run_until([this] { return watch_->idle(); });
  }

  // Moves the fake clock and lets the watch look at what settled (the settle timer's job).
  void advance(milliseconds d) {
    clock_.advance(d);
    watch_->check_settled();
    settle_loop();
  }

  // Closes the watch and checks that it says so once everything is closed, and that the loop
  // then closes cleanly.
  void finish() {
    int closed = 0;
    watch_->close([&closed] { ++closed; });
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(closed == 1);
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
  docpipe::test::FakeClock clock_;
  std::string root_, incoming_;
  std::unique_ptr<WatchFolder> watch_;
  std::vector<Reported> reported_;
  std::function<void(const std::string&)> on_report_;
};

// docpipe_intake_events_total{source="rescan"}, read as a scrape would.
double rescan_events(prometheus::Registry& registry) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "docpipe_intake_events_total") continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "source" && l.value == "rescan") return m.counter.value;
      }
    }
  }
  return -1;
}

}  // namespace

TEST_CASE("watch folder: a job file renamed into incoming is reported at once") {
  WatchFixture f(/*settle_ms=*/5000);
  REQUIRE(f.start() == 0);
  f.settle_loop();  // the start-up scan
  const TimePoint dropped_at = f.clock_.now();
  f.drop("job.json", R"({"id":"a"})");
  REQUIRE(f.run_until([&] { return !f.reported_.empty(); }));
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "job.json");
  // Taken on IN_MOVED_TO with the clock standing still, not after settle_ms of quiet (nor on a
  // ctime > mtime guess, which fails when the write and the rename share a clock tick).
  CHECK(f.reported_[0].at == dropped_at);
  f.finish();
}

TEST_CASE("watch folder: a file renamed over a name the intake holds is reported after forget") {
  WatchFixture f(/*settle_ms=*/5000);
  REQUIRE(f.start() == 0);
  f.settle_loop();
  f.drop("twice.json", "{}");
  REQUIRE(f.run_until([&] { return f.reported_.size() == 1; }));
  // While the intake works on the first file, a producer renames a second one over the name.
  f.drop("twice.json", R"({"id":"second"})");
  f.settle_loop();
  CHECK(f.reported_.size() == 1);  // held by the intake: not reported twice at once
  f.watch_->forget("twice.json");
  REQUIRE(f.run_until([&] { return f.reported_.size() == 2; }));
  CHECK(f.reported_[1].name == "twice.json");
  CHECK(f.reported_[1].at == f.reported_[0].at);  // at once, no settling
  f.finish();
}

TEST_CASE("watch folder: a file written in place is reported once, after settle_ms of quiet") {
  const auto settle = milliseconds(300);
  WatchFixture f(settle.count());
  REQUIRE(f.start() == 0);
  f.settle_loop();
  const std::string path = f.incoming_ + "/slow.json";
  const char* parts[] = {"{\"id\":", "\"slow\",", "\"x\":", "1}"};
  TimePoint last_write;
  for (const char* part : parts) {
    WatchFixture::write_file(path, part, O_APPEND);
    last_write = f.clock_.now();
    f.settle_loop();
    f.advance(milliseconds(100));  // a slow producer: quiet for less than settle_ms
    CHECK(f.reported_.empty());
  }
  // One millisecond short of settle_ms: still not, even when a rescan stats it once more.
  f.advance(settle - milliseconds(100) - milliseconds(1));
  f.watch_->rescan();
  f.settle_loop();
  CHECK(f.reported_.empty());
  f.advance(milliseconds(1));
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "slow.json");
  CHECK(f.reported_[0].at == last_write + settle);
  // Still exactly once while the file sits there.
  f.advance(10 * settle);
  f.watch_->rescan();
  f.settle_loop();
  CHECK(f.reported_.size() == 1);
  f.finish();
}

TEST_CASE("watch folder: hidden and non-json names are ignored, existing files found at start") {
  WatchFixture f(/*settle_ms=*/50);
  WatchFixture::write_file(f.incoming_ + "/.hidden.json", "{}", O_TRUNC);
  WatchFixture::write_file(f.incoming_ + "/notes.txt", "{}", O_TRUNC);
  WatchFixture::write_file(f.incoming_ + "/early.json", "{}", O_TRUNC);
  REQUIRE(f.start() == 0);
  f.settle_loop();
  CHECK(f.reported_.empty());  // found by a scan: nothing says it is complete
  f.advance(milliseconds(50));
  f.advance(milliseconds(1000));
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
  f.settle_loop();
  f.drop("again.json", "{}");
  REQUIRE(f.run_until([&] { return f.reported_.size() == 1; }));
  f.drop("again.json", "{}");
  REQUIRE(f.run_until([&] { return f.reported_.size() == 2; }));
  f.finish();
}

TEST_CASE("watch folder: the periodic rescan finds a file the watch missed, then watches again") {
  // The file dropped into the replacement folder has no event; only the rescan can find it, and
  // nothing says it is complete, so it takes the settle path.
  prometheus::Registry registry;
  docpipe::DaemonMetrics metrics(registry);
  const auto settle = milliseconds(1000);
  WatchFixture f(settle.count(), /*rescan_ms=*/20, &metrics);
  REQUIRE(f.start() == 0);
  f.settle_loop();
  // Replace incoming/ by a new folder at the same path, the file already in it: inotify keeps
  // watching the old inode, and the file was never in a watched folder, so no event names it.
  // (Made before it is swapped in, with the loop not running: a rescan timer firing between
  // a mkdir and a drop would watch the new folder first, and the drop would be seen at once.)
  const std::string next = f.root_ + "/new-incoming";
  fs::create_directories(next);
  WatchFixture::write_file(next + "/late.json", "{}", O_TRUNC);
  const TimePoint dropped_at = f.clock_.now();
  fs::rename(f.incoming_, f.root_ + "/old-incoming");
  fs::rename(next, f.incoming_);
  // The loop blocks until the rescan timer fires and its scan finds the file.
  REQUIRE(f.run_until([&] { return rescan_events(registry) >= 1; }));
  f.settle_loop();
  CHECK(f.reported_.empty());
  f.advance(settle);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "late.json");
  CHECK(f.reported_[0].at == dropped_at + settle);
  // The rescan watches the new folder: a file renamed into it now is taken at once again.
  const TimePoint renamed_at = f.clock_.now();
  f.drop("next.json", "{}");
  REQUIRE(f.run_until([&] { return f.reported_.size() == 2; }));
  CHECK(f.reported_[1].name == "next.json");
  CHECK(f.reported_[1].at == renamed_at);
  f.finish();
}

TEST_CASE("watch folder: a symlink, FIFO or folder named *.json is reported at once, unfollowed") {
  // The intake records such names in rejected/; ignoring them would leave them there forever.
  WatchFixture f(/*settle_ms=*/10000);
  REQUIRE(::symlink("/etc/hostname", (f.incoming_ + "/early-link.json").c_str()) == 0);
  REQUIRE(f.start() == 0);
  f.settle_loop();
  REQUIRE(::symlink("/etc/hostname", (f.incoming_ + "/link.json").c_str()) == 0);
  REQUIRE(::mkfifo((f.incoming_ + "/fifo.json").c_str(), 0644) == 0);
  REQUIRE(::mkdir((f.incoming_ + "/folder.json").c_str(), 0755) == 0);
  REQUIRE(f.run_until([&] { return f.reported_.size() == 4; }));
  std::set<std::string> names;
  for (const Reported& r : f.reported_) {
    names.insert(r.name);
    CHECK(r.at == f.clock_.now());  // the clock never moved: no settling
  }
  CHECK(names == std::set<std::string>{"early-link.json", "link.json", "fifo.json", "folder.json"});
  f.finish();
}

TEST_CASE("watch folder: an inotify queue overflow rescans at once and is counted") {
  prometheus::Registry registry;
  docpipe::DaemonMetrics metrics(registry);
  const auto settle = milliseconds(200);
  // The periodic rescan is an hour away: only the overflow's own rescan can find the file.
  WatchFixture f(settle.count(), /*rescan_ms=*/3600000, &metrics);
  REQUIRE(f.start() == 0);
  f.settle_loop();  // the start-up scan is done
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
  const TimePoint resumed_at = f.clock_.now();
  REQUIRE(f.run_until([&] { return metrics.intake_overflows().Value() == 1; }));
  f.settle_loop();
  // Found by the rescan, so it takes the settle path; not an hour.
  CHECK(f.reported_.empty());
  f.advance(settle);
  REQUIRE(f.reported_.size() == 1);
  CHECK(f.reported_[0].name == "lost.json");
  CHECK(f.reported_[0].at == resumed_at + settle);
  CHECK(metrics.intake_overflows().Value() == 1);
  f.finish();
}

TEST_CASE("watch folder: it may be destroyed with a scan in flight - close() calls back once") {
  WatchFixture f(/*settle_ms=*/50);
  WatchFixture::write_file(f.incoming_ + "/early.json", "{}", O_TRUNC);
  REQUIRE(f.start() == 0);
  f.settle_loop();
  f.watch_->rescan();  // a scan in flight
  CHECK_FALSE(f.watch_->idle());
  f.watch_.reset();  // the loop still finishes what it started, then frees the rest
  uv_run(&f.loop_, UV_RUN_DEFAULT);
  CHECK(f.reported_.empty());
  CHECK(uv_loop_close(&f.loop_) == 0);

  // Never started: closed at once.
  uv_loop_t loop;
  uv_loop_init(&loop);
  int closed = 0;
  WatchFolder idle(&loop, f.incoming_, 50, 1000, nullptr, [](const std::string&) {});
  idle.close([&closed] { ++closed; });
  idle.close([&closed] { ++closed; });
  CHECK(closed == 1);
  CHECK(uv_loop_close(&loop) == 0);
}
