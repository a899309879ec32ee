// The daemon under systemd (issue 5): the sd_notify protocol seen from a datagram socket the test
// binds itself (READY, STATUS, WATCHDOG at half of WATCHDOG_USEC, RELOADING/READY around SIGHUP,
// STOPPING), and journald-style log lines when stderr is the JOURNAL_STREAM.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// The receiving end of NOTIFY_SOCKET: an AF_UNIX datagram socket bound at a path.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  // Every message received so far, in order of arrival.
  const std::vector<std::string>& messages() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) break;
      messages_.emplace_back(buf, static_cast<size_t>(n));
    }
    return messages_;
  }

  // Polls until a message from index `from` on has `line` as one of its lines; its index, or -1.
  long wait_for(const std::string& line, size_t from, milliseconds timeout = kJobTimeout) {
    long found = -1;
    poll_until(timeout, [&] {
      const std::vector<std::string>& all = messages();
      for (size_t i = from; i < all.size() && found < 0; ++i) {
        if (has_line(all[i], line)) found = static_cast<long>(i);
      }
      return found >= 0;
    });
    return found;
  }

  // How many messages from index `from` on have `line`.
  size_t count(const std::string& line, size_t from) {
    size_t n = 0;
    const std::vector<std::string>& all = messages();
    for (size_t i = from; i < all.size(); ++i) n += has_line(all[i], line) ? 1 : 0;
    return n;
  }

  std::string dump() {
    std::string out;
    for (const std::string& m : messages()) out += "[" + m + "]\n";
    return out;
  }

  static bool has_line(const std::string& message, const std::string& line) {
    std::istringstream in(message);
    std::string l;
    while (std::getline(in, l)) {
      if (l == line || (line.back() == '=' && l.rfind(line, 0) == 0)) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

// Polls until `pred` holds over the socket's messages.
bool wait_until(NotifySocket& socket, const std::function<bool()>& pred) {
  return poll_until(kJobTimeout, [&] {
    socket.messages();
    return pred();
  });
}

}  // namespace

TEST_CASE("e2e systemd: READY, STATUS, WATCHDOG, RELOADING/READY on SIGHUP and STOPPING in order") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", config = tmp / "docpipe.json";
  write_config(config, R"({"workers": 2})");
  NotifySocket notify(tmp / "notify.sock");

  DaemonProcess daemon(spool, {"--config", config});
  daemon.add_env("NOTIFY_SOCKET=" + tmp / "notify.sock");
  // A 400 ms watchdog: the daemon must ping every 200 ms.
  daemon.add_env("WATCHDOG_USEC=400000");
  daemon.start();
  INFO("notify messages:\n" << notify.dump());

  const long ready = notify.wait_for("READY=1", 0);
  REQUIRE(ready >= 0);
  // At least two pings after READY, each with a one-line STATUS.
  CHECK(wait_until(notify, [&] { return notify.count("WATCHDOG=1", ready) >= 2; }));
  const long status = notify.wait_for("STATUS=", ready);
  REQUIRE(status >= 0);
  CHECK(notify.messages()[status].find("job(s) running, ") != std::string::npos);
  CHECK(notify.messages()[status].find(" documents/s") != std::string::npos);

  // A job runs; the STATUS line goes on (documents/s), and pings continue while it is busy.
  write_file(tmp / "in/a.txt", "alpha\n");
  write_file(tmp / "in/b.txt", "bravo\n");
  drop_job(spool, "j.json", make_job("j", tmp / "in", tmp / "out"));
  CHECK(daemon.wait_for_job("j").folder == "done");

  // SIGHUP: RELOADING=1 (with the MONOTONIC_USEC Type=notify-reload wants), then READY=1.
  const size_t before_reload = notify.messages().size();
  write_config(config, R"({"workers": 3})");
  REQUIRE(::kill(daemon.pid(), SIGHUP) == 0);
  const long reloading = notify.wait_for("RELOADING=1", before_reload);
  REQUIRE(reloading >= 0);
  CHECK(NotifySocket::has_line(notify.messages()[reloading], "MONOTONIC_USEC="));
  const long ready_again = notify.wait_for("READY=1", reloading + 1);
  CHECK(ready_again > reloading);
  CHECK(daemon.wait_for_log_lines({" config reloaded "}).size() == 1);

  // A refused reload also ends in READY=1: the daemon goes on with the old config.
  const size_t before_broken = notify.messages().size();
  write_config(config, R"({"workers": "many"})");
  REQUIRE(::kill(daemon.pid(), SIGHUP) == 0);
  const long reloading_broken = notify.wait_for("RELOADING=1", before_broken);
  REQUIRE(reloading_broken >= 0);
  CHECK(notify.wait_for("READY=1", reloading_broken + 1) > reloading_broken);
  CHECK(daemon.wait_for_log_lines({"config reload refused"}).size() == 1);
  const size_t after_reloads = notify.messages().size();
  CHECK(wait_until(notify, [&] { return notify.count("WATCHDOG=1", after_reloads) >= 2; }));

  // SIGTERM: STOPPING=1, then a clean exit.
  const size_t before_stop = notify.messages().size();
  CHECK(daemon.terminate() == 0);
  CHECK(notify.wait_for("STOPPING=1", before_stop, milliseconds(5000)) >= 0);
  // Nothing announces READY once stopping began.
  const long stopping = notify.wait_for("STOPPING=1", before_stop, milliseconds(0));
  CHECK(notify.count("READY=1", static_cast<size_t>(stopping)) == 0);
}

TEST_CASE("e2e systemd: without WATCHDOG_USEC the daemon sends READY and STATUS but no pings") {
  TempDir tmp(scratch_base());
  NotifySocket notify(tmp / "notify.sock");
  DaemonProcess daemon(tmp / "spool", {});
  daemon.add_env("NOTIFY_SOCKET=" + tmp / "notify.sock");
  daemon.start();
  INFO("notify messages:\n" << notify.dump());
  REQUIRE(notify.wait_for("READY=1", 0) >= 0);
  CHECK(daemon.terminate() == 0);
  CHECK(notify.wait_for("STOPPING=1", 0, milliseconds(5000)) >= 0);
  CHECK(notify.count("WATCHDOG=1", 0) == 0);
}

TEST_CASE("e2e systemd: on the JOURNAL_STREAM every log line carries its syslog priority") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", log_path = tmp / "daemon.log";
  // The daemon's stderr is this file; JOURNAL_STREAM names it the way systemd names its stream.
  write_file(log_path, "");
  struct stat st;
  REQUIRE(::stat(log_path.c_str(), &st) == 0);
  DaemonProcess daemon(spool, {}, log_path);
  daemon.add_env("JOURNAL_STREAM=" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  daemon.start();
  // A rejected job: a warning line (priority 4) among the info ones (6).
  write_file(spool + "/incoming/bad.json", "{\"id\": \"bad\"");
  daemon.wait_for_rejection("bad.json");
  REQUIRE(daemon.wait_for_log_lines({"job rejected"}).size() == 1);
  CHECK(daemon.terminate() == 0);

  const std::vector<std::string> lines = lines_of(daemon.log());
  INFO("log:\n" << daemon.log());
  REQUIRE_FALSE(lines.empty());
  for (const std::string& line : lines) {
    CAPTURE(line);
    // journald adds its own timestamp, so the line starts with the priority and the level.
    const bool prefixed = line.rfind("<6>info ", 0) == 0 || line.rfind("<4>warn ", 0) == 0 ||
                          line.rfind("<3>error ", 0) == 0 || line.rfind("<7>debug ", 0) == 0;
    CHECK(prefixed);
  }
  CHECK(daemon.log_lines_with({"<6>info docpipe ready "}).size() == 1);
  const std::vector<std::string> rejected = daemon.log_lines_with({"job rejected"});
  REQUIRE(rejected.size() == 1);
  CHECK(rejected[0].rfind("<4>warn job rejected file=bad.json ", 0) == 0);
}

}  // namespace e2e
