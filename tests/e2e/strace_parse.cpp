#include "tests/e2e/strace_parse.h"

#include <algorithm>
#include <sstream>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// Splits "a, \"b, c\", 7</p>, {x, y})" at its top-level commas up to the closing parenthesis.
std::vector<std::string> split_args(std::string_view s) {
  std::vector<std::string> args;
  std::string current;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      current += c;
      if (c == '\\' && i + 1 < s.size()) {
        current += s[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '(' || c == '[' || c == '{' || c == '<') {
      ++depth;
    } else if (c == ']' || c == '}' || c == '>') {
      --depth;
    } else if (c == ')') {
      if (depth == 0) break;
      --depth;
    } else if (c == ',' && depth == 0) {
      args.push_back(current);
      current.clear();
      if (i + 1 < s.size() && s[i + 1] == ' ') ++i;
      continue;
    }
    current += c;
  }
  if (!current.empty()) args.push_back(current);
  return args;
}

// An absolute path from a (directory descriptor, name) pair of a *at() call.
std::string at_path(const std::string& dirfd, const std::string& name_token) {
  std::string name = unquote(name_token);
  if (!name.empty() && name.front() == '/') return name;
  std::string dir = fd_path(dirfd);
  return dir.empty() ? name : dir + "/" + name;
}

std::string find_strace() {
  for (const char* candidate : {"/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"}) {
    if (::access(candidate, X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

std::string usable_strace(const TempDir& tmp) {
  const std::string strace = find_strace();
  if (strace.empty()) {
    skip_test("strace is not installed (scripts/deps --test)");
    return "";
  }
  if (run_command({strace, "-o", "/dev/null", "true"}, tmp.path()).exit_code != 0) {
    skip_test("strace cannot trace here (ptrace not permitted)");
    return "";
  }
  return strace;
}

// Decodes a strace string argument ("..." with C escapes; a truncated one ends in "...").
std::string unquote(std::string_view token) {
  std::string out;
  if (token.size() < 2 || token.front() != '"') return out;
  size_t end = token.rfind('"');
  for (size_t i = 1; i < end; ++i) {
    char c = token[i];
    if (c != '\\' || i + 1 >= end) {
      out += c;
      continue;
    }
    char e = token[++i];
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'v':
        out += '\v';
        break;
      case 'f':
        out += '\f';
        break;
      case 'x': {
        out += static_cast<char>(std::stoi(std::string(token.substr(i + 1, 2)), nullptr, 16));
        i += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          size_t n = 0;
          int v = 0;
          while (n < 3 && i < end && token[i] >= '0' && token[i] <= '7') {
            v = v * 8 + (token[i] - '0');
            ++i;
            ++n;
          }
          --i;
          out += static_cast<char>(v);
        } else {
          out += e;  // \" and \\ (and anything else strace escapes by itself)
        }
    }
  }
  return out;
}

// The path strace -y prints after a descriptor ("7</tmp/x/out>" -> "/tmp/x/out"), else "".
std::string fd_path(std::string_view token) {
  size_t open = token.find('<');
  if (open == std::string_view::npos || token.back() != '>') return "";
  return std::string(token.substr(open + 1, token.size() - open - 2));
}

// Reads `strace -f -o FILE` output: "PID name(args) = result", or, where threads interleave,
// "PID name(args <unfinished ...>" then "PID <... name resumed>) = result". The call is taken
// from the line where it starts; resumptions, signals and exits are skipped.
std::vector<Syscall> parse_trace(const std::string& path) {
  std::vector<Syscall> calls;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    std::string_view rest = std::string_view(line).substr(space + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty() || rest.front() == '<' || rest.front() == '-' || rest.front() == '+') continue;
    size_t paren = rest.find('(');
    if (paren == std::string_view::npos) continue;
    Syscall call;
    call.index = calls.size();
    call.name = std::string(rest.substr(0, paren));
    call.args = split_args(rest.substr(paren + 1));
    if (!call.args.empty()) {
      std::string& last = call.args.back();
      const std::string unfinished = " <unfinished ...>";
      if (last.size() >= unfinished.size() &&
          last.compare(last.size() - unfinished.size(), unfinished.size(), unfinished) == 0) {
        last.erase(last.size() - unfinished.size());
      }
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

std::vector<Rename> renames(const std::vector<Syscall>& calls) {
  std::vector<Rename> out;
  for (const Syscall& c : calls) {
    if (c.name == "rename" && c.args.size() >= 2) {
      out.push_back({c.index, unquote(c.args[0]), unquote(c.args[1])});
    } else if ((c.name == "renameat" || c.name == "renameat2") && c.args.size() >= 4) {
      out.push_back({c.index, at_path(c.args[0], c.args[1]), at_path(c.args[2], c.args[3])});
    }
  }
  return out;
}

std::vector<Rename> publishes(const std::vector<Syscall>& calls) {
  std::vector<Rename> out = renames(calls);
  for (const Syscall& c : calls) {
    // A link to "." always fails (it exists): the daemon's probe of whether it may link
    // anonymous files at all (pipeline/output_file.cc), not a publish.
    if (c.name == "linkat" && c.args.size() >= 4 && unquote(c.args[3]) != ".") {
      out.push_back({c.index, at_path(c.args[0], c.args[1]), at_path(c.args[2], c.args[3])});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Rename& a, const Rename& b) { return a.index < b.index; });
  return out;
}

// (index, path) of every fsync and fdatasync.
std::vector<std::pair<size_t, std::string>> syncs(const std::vector<Syscall>& calls) {
  std::vector<std::pair<size_t, std::string>> out;
  for (const Syscall& c : calls) {
    if ((c.name == "fsync" || c.name == "fdatasync") && !c.args.empty()) {
      out.emplace_back(c.index, fd_path(c.args[0]));
    }
  }
  return out;
}

}  // namespace e2e
