#include "tests/e2e/crash_support.h"

#include <dirent.h>
#include <zlib.h>

#include <cstdio>
#include <regex>

namespace e2e {

JournalView read_journal(const std::string& path) {
  JournalView view;
  std::string text = read_file(path);
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) {
      view.torn = true;
      break;
    }
    // A record starts at the line's start or, after damage that took a newline, further in.
    std::string payload;
    auto valid_at = [&](size_t start) {
      if (start + 9 > nl || text[start + 8] != ' ') return false;
      payload = text.substr(start + 9, nl - start - 9);
      char crc[9];
      std::snprintf(crc, sizeof crc, "%08lx",
                    crc32(0L, reinterpret_cast<const Bytef*>(payload.data()),
                          static_cast<uInt>(payload.size())));
      return text.compare(start, 8, crc) == 0;
    };
    bool good = valid_at(at);
    if (!good) {
      ++view.bad_lines;
      for (size_t p = text.find(" {", at + 9); p != std::string::npos && p < nl && !good;
           p = text.find(" {", p + 1)) {
        good = valid_at(p - 8);
      }
    }
    at = nl + 1;
    if (!good) continue;
    nlohmann::json j = nlohmann::json::parse(payload);
    if (view.header.is_null() && j.contains("journal")) {
      view.header = std::move(j);
    } else if (j.contains("intent")) {
      view.intents.push_back(std::move(j));
    } else {
      view.records.push_back(std::move(j));
    }
  }
  return view;
}

std::set<std::string> recorded_inputs(const JournalView& journal) {
  std::set<std::string> inputs;
  for (const nlohmann::json& r : journal.records) inputs.insert(r["input"].get<std::string>());
  return inputs;
}

size_t count_outputs(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  size_t n = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (e->d_type == DT_DIR) {
      n += count_outputs(dir + "/" + e->d_name);
    } else {
      ++n;
    }
  }
  ::closedir(d);
  return n;
}

long resumed_count(const DaemonProcess& daemon, const std::string& id) {
  std::vector<std::string> lines = daemon.log_lines_with({" job resumed ", "job=" + id + " "});
  if (lines.empty()) return -1;
  std::smatch m;
  if (!std::regex_search(lines.back(), m, std::regex("already_done=([0-9]+)"))) return -1;
  return std::stol(m[1]);
}

nlohmann::json job_status(const std::string& spool, const std::string& id,
                          const std::string& scratch) {
  CommandResult r = docpipe({"status", "--spool", spool, id, "--json"}, scratch);
  if (r.exit_code != 0) return nullptr;
  nlohmann::json reply = nlohmann::json::parse(r.out, nullptr, false);
  if (!reply.is_object() || !reply.contains("job")) return nullptr;
  return reply["job"];
}

}  // namespace e2e
