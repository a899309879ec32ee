// template: wraps the document in a template given inline (`template`) or read from a file
// (`template_file`), with {{content}}, {{name}} and {{path}} placeholders; streaming (the part
// before {{content}} goes out with the first chunk, the part after it at the end).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

constexpr size_t kMaxTemplateBytes = 1u << 20;

struct Segment {
  enum Kind { kText, kName, kPath } kind = kText;
  std::string text;  // kText only
};

// The template split at {{content}}.
struct ParsedTemplate {
  std::vector<Segment> prefix;
  std::vector<Segment> suffix;
};

void append_escaped(std::string_view in, std::string& out) {
  size_t start = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const char* entity = nullptr;
    switch (in[i]) {
      case '&':
        entity = "&amp;";
        break;
      case '<':
        entity = "&lt;";
        break;
      case '>':
        entity = "&gt;";
        break;
      case '"':
        entity = "&quot;";
        break;
      case '\'':
        entity = "&#39;";
        break;
      default:
        continue;
    }
    out.append(in.data() + start, i - start);
    out.append(entity);
    start = i + 1;
  }
  out.append(in.data() + start, in.size() - start);
}

bool is_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Placeholders are {{word}}, spaces inside the braces allowed; any other {{...}} is text, so
// templates that carry client-side template syntax still work. An unknown word is an error, as it
// is most likely a typo.
std::optional<ParsedTemplate> parse_template(std::string_view text, std::string& error) {
  ParsedTemplate parsed;
  std::vector<Segment>* part = &parsed.prefix;
  int contents = 0;
  auto add_text = [&](std::string_view t) {
    if (t.empty()) return;
    if (part->empty() || part->back().kind != Segment::kText) part->push_back(Segment{});
    part->back().text.append(t);
  };
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find("{{", at);
    if (open == std::string_view::npos) break;
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    const std::string_view word = trim_spaces(text.substr(open + 2, close - open - 2));
    if (!is_identifier(word)) {
      add_text(text.substr(at, open + 2 - at));
      at = open + 2;
      continue;
    }
    add_text(text.substr(at, open - at));
    at = close + 2;
    if (word == "content") {
      if (++contents == 1) part = &parsed.suffix;
    } else if (word == "name") {
      part->push_back(Segment{Segment::kName, ""});
    } else if (word == "path") {
      part->push_back(Segment{Segment::kPath, ""});
    } else {
      error = "unknown placeholder {{" + std::string(word) +
              "}} (known: {{content}}, {{name}}, {{path}})";
      return std::nullopt;
    }
  }
  add_text(text.substr(at));
  if (contents != 1) {
    error = "expected exactly one {{content}} placeholder, found " +
            (contents == 0 ? std::string("none") : std::to_string(contents));
    return std::nullopt;
  }
  return parsed;
}

class TemplateTransform : public DocumentTransform {
 public:
  TemplateTransform(std::shared_ptr<const ParsedTemplate> parsed, bool escape_html,
                    const DocumentContext& doc)
      : parsed_(std::move(parsed)),
        escape_html_(escape_html),
        name_(doc.name),
        path_(doc.relative_path) {}

  Status update(std::string_view in, std::string& out) override {
    write_prefix(out);
    if (escape_html_) {
      append_escaped(in, out);
    } else {
      out.append(in);
    }
    return ok();
  }

  Status finish(std::string& out) override {
    write_prefix(out);
    write(parsed_->suffix, out);
    return ok();
  }

 private:
  void write_prefix(std::string& out) {
    if (prefix_written_) return;
    prefix_written_ = true;
    write(parsed_->prefix, out);
  }

  void write(const std::vector<Segment>& segments, std::string& out) const {
    for (const Segment& s : segments) {
      if (s.kind == Segment::kText) {
        out.append(s.text);
        continue;
      }
      const std::string& value = s.kind == Segment::kName ? name_ : path_;
      if (escape_html_) {
        append_escaped(value, out);
      } else {
        out.append(value);
      }
    }
  }

  std::shared_ptr<const ParsedTemplate> parsed_;
  bool escape_html_;
  std::string name_;
  std::string path_;
  bool prefix_written_ = false;
};

class TemplateStep : public TransformStep {
 public:
  TemplateStep(ParsedTemplate parsed, bool escape_html, std::string text)
      : parsed_(std::make_shared<const ParsedTemplate>(std::move(parsed))),
        escape_html_(escape_html),
        text_(std::move(text)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<TemplateTransform>(parsed_, escape_html_, doc);
  }
  // A template_file's text as read at validation: an edit of the file changes the output.
  std::string fingerprint_extra() const override { return text_; }

 private:
  std::shared_ptr<const ParsedTemplate> parsed_;
  bool escape_html_;
  std::string text_;  // the template's text (at most 1 MiB)
};

// The template file's text, read once when the job is validated. The file must resolve (symlinks
// and ".." included) to a place under one of the daemon's allowed input roots, like the job's
// inputs, so that a job cannot use it to read arbitrary files into its output.
std::optional<std::string> read_template_file(const std::string& path, const TransformEnv& env,
                                              std::string& error) {
  if (!is_absolute_path(path)) {
    error = "expected an absolute path, got " + nlohmann::json(path).dump();
    return std::nullopt;
  }
  const std::string real = real_path(path);
  if (real.empty()) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  bool allowed = false;
  std::string roots;
  for (const std::string& root : env.allowed_input_roots) {
    std::string real_root = real_path(root);
    if (real_root.empty()) real_root = normalize_path(root);
    allowed = allowed || path_is_within(real, real_root);
    roots += (roots.empty() ? "" : ", ") + root;
  }
  if (!allowed) {
    error = path + (real != path ? " (which is " + real + ")" : "") +
            " is outside the allowed input roots (" + (roots.empty() ? "none" : roots) + ")";
    return std::nullopt;
  }
  // Opened without following a symlink swapped in since realpath(), and without blocking on a
  // FIFO; then checked and read through the same descriptor, never more than the limit.
  const int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st;
  std::string text;
  if (::fstat(fd, &st) != 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = path + " is not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > kMaxTemplateBytes) {
    error = path + " is larger than 1 MiB (" + std::to_string(st.st_size) + " bytes)";
  } else {
    text.resize(kMaxTemplateBytes + 1);
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = "cannot read " + path + ": " + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    text.resize(got);
    if (error.empty() && got > kMaxTemplateBytes) error = path + " is larger than 1 MiB";
  }
  ::close(fd);
  if (!error.empty()) return std::nullopt;
  return text;
}

const ParamSchema& schema() {
  static const ParamSchema s =
      ParamSchema()
          .optional_string("template",
                           "the template text, with {{content}} exactly once and optionally "
                           "{{name}} (file name) and {{path}} (path relative to the input "
                           "folder); give this or template_file (at most 1 MiB)")
          .optional_string("template_file",
                           "absolute path of a file holding the template, under the daemon's "
                           "allowed input roots, read when the job is validated; give this or "
                           "template (at most 1 MiB)")
          .boolean("escape_html", false,
                   "HTML-escape the content, {{name}} and {{path}} (& < > \" ')");
  return s;
}

std::shared_ptr<const TransformStep> configure(const nlohmann::json& params,
                                               const TransformEnv& env, FieldErrors& errors) {
  ParamReader reader(schema(), params, errors);
  std::optional<std::string> inline_text = reader.optional_string("template");
  std::optional<std::string> file = reader.optional_string("template_file");
  const bool escape_html = reader.boolean("escape_html");
  if (reader.has("template") && reader.has("template_file")) {
    reader.error("template_file", "give either template or template_file, not both");
    return nullptr;
  }
  if (!reader.has("template") && !reader.has("template_file")) {
    reader.error("template", "required parameter is missing (give template or template_file)");
    return nullptr;
  }
  const char* source = inline_text ? "template" : "template_file";
  std::string error;
  std::optional<std::string> text;
  if (inline_text) {
    if (inline_text->size() > kMaxTemplateBytes) {
      error = "expected at most 1 MiB, got " + std::to_string(inline_text->size()) + " bytes";
    } else {
      text = std::move(inline_text);
    }
  } else if (file) {
    text = read_template_file(*file, env, error);
  }
  std::optional<ParsedTemplate> parsed;
  if (text) parsed = parse_template(*text, error);
  if (!error.empty()) reader.error(source, error);
  if (!reader.ok() || !parsed) return nullptr;
  return std::make_shared<TemplateStep>(std::move(*parsed), escape_html, std::move(*text));
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "template",
    .description =
        "wraps the document in a template with {{content}}, {{name}} and {{path}} placeholders",
    .streaming = true,
    .params = schema().specs(),
    .configure = configure});

}  // namespace
}  // namespace docpipe
