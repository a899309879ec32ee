// The redact floor: the floor's work per document (bench/floor.c: open, read it whole, write a
// temp file beside the target, rename, on N threads) plus the regular-expression work docpipe's
// `redact` transform must do on it, and nothing else. docpipe's redact throughput is read
// against this, so that neither the I/O nor the regex cost hides the daemon's own overhead.
//
// The matching is that of core/transforms/redact_matcher.cc for a document seen whole (a small
// document arrives in one chunk, so docpipe scans it once, at its end): the enabled built-in
// patterns combined into one RE2 with longest_match, the leftmost-longest match of at most 1024
// bytes (max_match_bytes' default) replaced by "[REDACTED]", card-shaped matches accepted only as
// a whole digit run of 13-19 digits passing Luhn (else the other patterns are tried at that
// position and the rest of the run skipped), ipv4 only as a dotted quad with no longer number or
// dotted sequence around it. Its outputs must equal docpipe's byte for byte; scripts/bench
// checks that, which also keeps this copy honest when redact_matcher.cc changes.
//
//   redact_floor [-t THREADS] [-p email,card,ipv4] SRC DST      (DST and its sub-folders are
//                                                                created; -p default email,card)
//
// Prints "FILES BYTES SECONDS" (bytes read) on one line. Built by scripts/bench with
// `c++ -O2 -std=c++20 -pthread ... -lre2`.
#include <fcntl.h>
#include <ftw.h>
#include <re2/re2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

// The patterns, as in redact_matcher.cc.
constexpr const char* kEmail = "[A-Za-z0-9._%+\\-]{1,64}@(?:[A-Za-z0-9\\-]+\\.)+[A-Za-z]{2,}";
constexpr const char* kIpv4 =
    "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}"
    "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
constexpr const char* kCard = "[0-9](?:[ \\-]?[0-9]){12,19}";
constexpr size_t kMinCardDigits = 13;
constexpr size_t kMaxCardDigits = 19;
constexpr size_t kMaxMatchBytes = 1024;
const std::string kReplacement = "[REDACTED]";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_card_separator(char c) { return c == ' ' || c == '-'; }

[[noreturn]] void die(const char* what, const std::string& path) {
  std::fprintf(stderr, "redact_floor: %s %s: %s\n", what, path.c_str(), std::strerror(errno));
  std::exit(1);
}

std::unique_ptr<RE2> compile(const std::vector<std::string>& patterns, int64_t max_mem) {
  if (patterns.empty()) return nullptr;
  std::string combined;
  for (const std::string& p : patterns) {
    if (!combined.empty()) combined += '|';
    combined += "(?:" + p + ")";
  }
  RE2::Options options;
  options.set_longest_match(true);
  options.set_log_errors(false);
  options.set_max_mem(max_mem);
  auto re = std::make_unique<RE2>(combined, options);
  if (!re->ok()) {
    std::fprintf(stderr, "redact_floor: %s\n", re->error().c_str());
    std::exit(1);
  }
  return re;
}

struct Matcher {
  bool email = false, card = false, ipv4 = false;
  std::unique_ptr<RE2> all, all_but_card, all_but_ipv4;
};
Matcher matcher;

bool card_shaped(std::string_view t) {
  size_t digits = 0;
  for (char c : t) {
    if (is_digit(c)) {
      ++digits;
    } else if (!is_card_separator(c)) {
      return false;
    }
  }
  return digits >= kMinCardDigits;
}

bool ipv4_shaped(std::string_view t) {
  size_t dots = 0;
  for (char c : t) {
    if (c == '.') {
      ++dots;
    } else if (!is_digit(c)) {
      return false;
    }
  }
  return dots == 3;
}

bool luhn_valid(const char* digits, size_t count) {
  int sum = 0;
  bool twice = false;
  for (size_t i = count; i-- > 0;) {
    int d = digits[i] - '0';
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

// One document's scan: buf is the whole document; every function returns an end position, 0
// for "no acceptable match".
struct Scan {
  std::string_view buf;

  size_t longest_at(const RE2* re, size_t start) const {
    if (re == nullptr) return 0;
    const re2::StringPiece text(buf.data(), buf.size());
    size_t end = std::min(buf.size(), start + kMaxMatchBytes);
    re2::StringPiece m;
    if (!re->Match(text, start, end, RE2::ANCHOR_START, &m, 1) || m.empty()) return 0;
    return start + m.size();
  }

  size_t card_at(size_t start) const {
    const size_t size = buf.size();
    if (start > 0) {
      char before = buf[start - 1];
      if (is_digit(before)) return 0;
      if (is_card_separator(before) && start > 1 && is_digit(buf[start - 2])) return 0;
    }
    char digits[kMaxCardDigits];
    size_t count = 0, i = start;
    while (i < size) {
      char c = buf[i];
      if (is_digit(c)) {
        if (count == kMaxCardDigits) return 0;
        digits[count++] = c;
        ++i;
      } else if (is_card_separator(c) && count > 0 && i + 1 < size && is_digit(buf[i + 1])) {
        ++i;
      } else {
        break;
      }
    }
    if (count < kMinCardDigits || !luhn_valid(digits, count)) return 0;
    return i;
  }

  size_t ipv4_at(size_t start) const {
    const size_t size = buf.size();
    if (start > 0) {
      char before = buf[start - 1];
      if (is_word(before)) return 0;
      if (before == '.' && start > 1 && is_word(buf[start - 2])) return 0;
    }
    size_t i = start;
    for (int octet = 0; octet < 4; ++octet) {
      if (octet > 0) {
        if (i >= size || buf[i] != '.') return 0;
        ++i;
      }
      size_t first = i;
      int value = 0;
      while (i < size && is_digit(buf[i]) && i - first < 3) value = value * 10 + (buf[i++] - '0');
      size_t len = i - first;
      if (len == 0 || value > 255 || (len > 1 && buf[first] == '0')) return 0;
    }
    if (i < size) {
      char after = buf[i];
      if (is_word(after)) return 0;
      if (after == '.' && i + 1 < size && is_word(buf[i + 1])) return 0;
    }
    return i;
  }

  size_t accept(size_t start, size_t end) const {
    if (end - start > kMaxMatchBytes) {
      end = longest_at(matcher.all.get(), start);
      if (end == 0) return 0;
    }
    if (end == start) return 0;
    std::string_view t = buf.substr(start, end - start);
    if (matcher.card && card_shaped(t)) {
      return std::max(card_at(start), longest_at(matcher.all_but_card.get(), start));
    }
    if (matcher.ipv4 && ipv4_shaped(t)) {
      return std::max(ipv4_at(start), longest_at(matcher.all_but_ipv4.get(), start));
    }
    return end;
  }

  size_t next_after_refused(size_t start) const {
    if (!matcher.card || !is_digit(buf[start])) return start + 1;
    const size_t size = buf.size();
    size_t end = start + 1;
    while (end < size && (is_digit(buf[end]) || (is_card_separator(buf[end]) && end + 1 < size &&
                                                 is_digit(buf[end + 1])))) {
      ++end;
    }
    if (end <= start + 1) return start + 1;
    const RE2* others = matcher.all_but_card.get();
    if (others == nullptr) return end;
    const re2::StringPiece text(buf.data(), size);
    re2::StringPiece m;
    if (others->Match(text, start + 1, size, RE2::UNANCHORED, &m, 1)) {
      const size_t found = static_cast<size_t>(m.data() - buf.data());
      if (found < end) return found;
    }
    return end;
  }

  void run(std::string& out) const {
    const size_t size = buf.size();
    const re2::StringPiece text(buf.data(), size);
    re2::StringPiece m;
    size_t pos = 0, next = 0;
    while (next <= size) {
      if (!matcher.all->Match(text, next, size, RE2::UNANCHORED, &m, 1)) break;
      size_t start = static_cast<size_t>(m.data() - buf.data());
      size_t end = accept(start, start + m.size());
      if (end == 0) {
        next = next_after_refused(start);
        continue;
      }
      out.append(buf.data() + pos, start - pos);
      out.append(kReplacement);
      pos = next = end;
    }
    out.append(buf.data() + pos, size - pos);
  }
};

std::vector<std::string> files, dirs;  // relative to src; "" for src itself
std::string src, dst;
std::atomic<size_t> next_file{0};
std::atomic<unsigned long long> total_bytes{0};

int visit(const char* path, const struct stat*, int type, struct FTW*) {
  const char* rel = path + src.size();
  while (*rel == '/') ++rel;
  if (type == FTW_F) files.emplace_back(rel);
  if (type == FTW_D) dirs.emplace_back(rel);
  return 0;
}

void work() {
  std::string buf, out;
  for (;;) {
    size_t i = next_file.fetch_add(1);
    if (i >= files.size()) break;
    std::string in_path = src + "/" + files[i];
    int in = open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) die("open", in_path);
    struct stat st;
    if (fstat(in, &st) != 0) die("fstat", in_path);
    buf.resize(static_cast<size_t>(st.st_size) + 1);
    size_t got = 0;
    ssize_t n;
    while ((n = read(in, buf.data() + got, buf.size() - got)) > 0) {
      got += static_cast<size_t>(n);
      if (got == buf.size()) buf.resize(buf.size() * 2);
    }
    if (n < 0) die("read", in_path);
    close(in);
    out.clear();
    Scan{std::string_view(buf.data(), got)}.run(out);
    std::string out_path = dst + "/" + files[i];
    size_t slash = out_path.rfind('/');
    std::string tmp_path = out_path.substr(0, slash) + "/." + out_path.substr(slash + 1) +
                           ".tmp." + std::to_string(i);
    int fd = open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die("create", tmp_path);
    size_t put = 0;
    while (put < out.size()) {
      n = write(fd, out.data() + put, out.size() - put);
      if (n < 0) die("write", tmp_path);
      put += static_cast<size_t>(n);
    }
    if (close(fd) != 0) die("close", tmp_path);
    if (rename(tmp_path.c_str(), out_path.c_str()) != 0) die("rename", out_path);
    total_bytes.fetch_add(got);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::string patterns = "email,card";
  int opt;
  while ((opt = getopt(argc, argv, "t:p:")) != -1) {
    if (opt == 't') {
      threads = std::atoi(optarg);
    } else if (opt == 'p') {
      patterns = optarg;
    } else {
      return 2;
    }
  }
  if (argc - optind != 2 || threads < 1) {
    std::fprintf(stderr, "usage: redact_floor [-t THREADS] [-p email,card,ipv4] SRC DST\n");
    return 2;
  }
  src = argv[optind];
  dst = argv[optind + 1];
  for (size_t at = 0; at <= patterns.size();) {
    size_t comma = std::min(patterns.find(',', at), patterns.size());
    std::string name = patterns.substr(at, comma - at);
    if (name == "email") {
      matcher.email = true;
    } else if (name == "card") {
      matcher.card = true;
    } else if (name == "ipv4") {
      matcher.ipv4 = true;
    } else {
      std::fprintf(stderr, "redact_floor: unknown pattern '%s' (email, card, ipv4)\n",
                   name.c_str());
      return 2;
    }
    at = comma + 1;
  }
  // Same order and memory limits as RedactMatcher::create.
  std::vector<std::string> all, but_card, but_ipv4;
  auto add = [&](const char* p, bool is_card, bool is_ipv4) {
    all.push_back(p);
    if (!is_card) but_card.push_back(p);
    if (!is_ipv4) but_ipv4.push_back(p);
  };
  if (matcher.email) add(kEmail, false, false);
  if (matcher.ipv4) add(kIpv4, false, true);
  if (matcher.card) add(kCard, true, false);
  matcher.all = compile(all, 32 << 20);
  if (matcher.card) matcher.all_but_card = compile(but_card, 8 << 20);
  if (matcher.ipv4) matcher.all_but_ipv4 = compile(but_ipv4, 8 << 20);

  auto t0 = std::chrono::steady_clock::now();
  // Finding the files is part of the work of any tool.
  if (nftw(src.c_str(), visit, 64, FTW_PHYS) != 0) die("walk", src);
  for (const std::string& d : dirs) {
    std::string path = dst + "/" + d;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) die("mkdir", path);
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu %llu %.6f\n", files.size(), total_bytes.load(), seconds);
  return 0;
}
