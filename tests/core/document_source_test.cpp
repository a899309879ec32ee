// The lazy input walker (core/document_source.h) on real folders: globs, pruning, symlinks,
// temp files and unreadable folders.

#include "core/document_source.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using docpipe::DocumentRef;
using docpipe::JobSpec;
using docpipe::make_document_source;

namespace {

struct WalkFixture {
  WalkFixture() {
    char tmpl[] = "/tmp/docpipe-walk-XXXXXX";
    root = ::mkdtemp(tmpl);
    in = root + "/in";
    fs::create_directories(in);
  }
  ~WalkFixture() {
    for (const std::string& p : locked) ::chmod(p.c_str(), 0755);
    fs::remove_all(root);
  }

  // Makes a folder unreadable; the destructor opens it up again so that it can be removed.
  void lock(const std::string& rel) {
    locked.push_back(in + "/" + rel);
    REQUIRE(::chmod(locked.back().c_str(), 0) == 0);
  }

  void put(const std::string& rel, const std::string& content = "x") {
    fs::path p = fs::path(in) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }

  JobSpec job(std::vector<std::string> include, std::vector<std::string> exclude = {}) const {
    JobSpec spec;
    spec.input.dir = in;
    spec.input.include = std::move(include);
    spec.input.exclude = std::move(exclude);
    return spec;
  }

  std::string root;
  std::string in;
  std::vector<std::string> locked;
};

struct Walk {
  std::vector<std::string> relative;  // sorted
  std::vector<std::string> input;     // in the order of `relative`
  std::vector<std::string> errors;
  std::string fatal;  // fatal_error()'s message, "" if none
};

// kCount: these fixtures have no output folder.
Walk walk(const JobSpec& spec) {
  std::unique_ptr<docpipe::DocumentSource> source =
      make_document_source(spec, docpipe::SourceUse::kCount);
  std::vector<DocumentRef> docs;
  while (std::optional<DocumentRef> d = source->next()) docs.push_back(std::move(*d));
  CHECK_FALSE(source->next().has_value());  // stays exhausted
  std::sort(docs.begin(), docs.end(), [](const DocumentRef& a, const DocumentRef& b) {
    return a.relative_path < b.relative_path;
  });
  Walk w;
  for (DocumentRef& d : docs) {
    w.relative.push_back(d.relative_path);
    w.input.push_back(d.input_path);
  }
  w.errors = source->errors();
  if (source->fatal_error()) w.fatal = source->fatal_error()->message;
  return w;
}

// Runs `body` in a forked child and returns what it returned, through a pipe; the child's exit
// code must be 0 (`body` may _exit with another code to say its set-up failed).
std::string output_of_child(const std::function<std::string()>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    const std::string out = body();
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::write(fds[1], out.data() + off, out.size() - off);
      if (n <= 0) ::_exit(4);
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return text;
}

// Runs the walk as an unprivileged user when we are root (root reads any folder), so that an
// unreadable folder really is unreadable. Returns the walk's relative paths and errors, one per
// line, "doc <path>" or "error <message>".
std::vector<std::string> walk_unprivileged(const JobSpec& spec, const std::string& root) {
  std::vector<std::string> lines;
  bool as_root = ::geteuid() == 0;
  if (as_root) ::chmod(root.c_str(), 0755);  // let the unprivileged child reach the tree
  const std::string text = output_of_child([&] {
    if (as_root && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    std::string out;
    std::unique_ptr<docpipe::DocumentSource> source =
        make_document_source(spec, docpipe::SourceUse::kCount);
    while (std::optional<DocumentRef> d = source->next()) out += "doc " + d->relative_path + "\n";
    for (const std::string& e : source->errors()) out += "error " + e + "\n";
    return out;
  });
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      lines.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

void make_tree_readable_by_others(const std::string& in) {
  ::chmod(in.c_str(), 0755);
  for (auto& e : fs::recursive_directory_iterator(in)) {
    if (e.is_symlink()) continue;
    ::chmod(e.path().c_str(), e.is_directory() ? 0755 : 0644);
  }
}

}  // namespace

TEST_CASE("document source: walks nested folders and yields only matching regular files") {
  WalkFixture f;
  f.put("top.md");
  f.put("top.txt");
  f.put("a/b/c.md");
  f.put("a/d.txt");
  f.put("x/y/z/w.md");
  f.put(".hidden.md");
  fs::create_directories(f.in + "/empty/deeper");
  REQUIRE(::mkfifo((f.in + "/pipe.md").c_str(), 0644) == 0);

  Walk w = walk(f.job({"**/*.md"}));
  CHECK(w.relative == std::vector<std::string>{".hidden.md", "a/b/c.md", "top.md", "x/y/z/w.md"});
  CHECK(w.input == std::vector<std::string>{f.in + "/.hidden.md", f.in + "/a/b/c.md",
                                            f.in + "/top.md", f.in + "/x/y/z/w.md"});
  CHECK(w.errors.empty());
}

TEST_CASE("document source: several include patterns and excludes combine") {
  WalkFixture f;
  f.put("docs/a.md");
  f.put("docs/drafts/b.md");
  f.put("docs/c.txt");
  f.put("notes/d.txt");
  f.put("notes/e.md");

  Walk w = walk(f.job({"docs/**", "**/*.txt"}, {"**/drafts/**", "docs/*.txt"}));
  CHECK(w.relative == std::vector<std::string>{"docs/a.md", "notes/d.txt"});
  CHECK(w.errors.empty());
}

TEST_CASE("document source: no match yields nothing and no error") {
  WalkFixture f;
  f.put("a.md");
  f.put("sub/b.md");
  Walk w = walk(f.job({"**/*.pdf"}));
  CHECK(w.relative.empty());
  CHECK(w.errors.empty());

  WalkFixture empty;
  CHECK(walk(empty.job({"**"})).relative.empty());
}

TEST_CASE("document source: files being written by the pipeline are not documents") {
  WalkFixture f;
  f.put("a.md");
  f.put(".a.md.docpipe-tmp.Xy12Ab");
  f.put("sub/.b.md.html.docpipe-tmp.000001");
  f.put(".docpipe-tmp-job");
  f.put("docpipe-tmp.md");  // only the temp naming patterns are skipped
  Walk w = walk(f.job({"**"}));
  CHECK(w.relative == std::vector<std::string>{"a.md", "docpipe-tmp.md"});
}

TEST_CASE("document source: symlinks to files inside the input folder are followed, others not") {
  WalkFixture f;
  f.put("real/a.md", "inside");
  fs::create_directories(f.root + "/outside");
  std::ofstream(f.root + "/outside/secret.md") << "secret";
  fs::create_directories(f.root + "/outside/tree");
  std::ofstream(f.root + "/outside/tree/deep.md") << "deep";

  fs::create_symlink(f.in + "/real/a.md", f.in + "/link_in.md");
  fs::create_symlink("real/a.md", f.in + "/link_rel.md");
  fs::create_symlink(f.root + "/outside/secret.md", f.in + "/link_out.md");
  fs::create_symlink(f.in + "/nowhere.md", f.in + "/dangling.md");
  fs::create_symlink(f.root + "/outside/tree", f.in + "/dir_out");  // folders: never followed
  fs::create_symlink(f.in + "/real", f.in + "/dir_in");

  Walk w = walk(f.job({"**"}));
  CHECK(w.relative == std::vector<std::string>{"link_in.md", "link_rel.md", "real/a.md"});
  // A followed link is read through its resolved path, which is what was checked.
  const std::string target = f.in + "/real/a.md";
  CHECK(w.input == std::vector<std::string>{target, target, target});
  CHECK(w.errors == std::vector<std::string>{
                        f.in + "/link_out.md: symlink points outside the input folder (to " +
                        f.root + "/outside/secret.md), skipped"});
}

TEST_CASE("document source: an unreadable folder yields nothing but is reported") {
  WalkFixture f;
  f.put("ok.md");
  f.put("locked/a.md");
  f.put("locked/inner/b.md");
  make_tree_readable_by_others(f.in);
  f.lock("locked");

  std::vector<std::string> lines = walk_unprivileged(f.job({"**"}), f.root);
  CHECK(lines ==
        std::vector<std::string>{
            "doc ok.md", "error " + f.in + "/locked: cannot open folder: Permission denied"});
}

TEST_CASE("document source: excluded and unreachable folders are never opened") {
  WalkFixture f;
  f.put("docs/a.md");
  f.put("drafts/b.md");
  f.put("secret/c.md");
  make_tree_readable_by_others(f.in);
  f.lock("drafts");
  f.lock("secret");

  // Opening drafts/ or secret/ would fail and be reported, so no error proves they were pruned:
  // drafts/ by the exclude, secret/ because no include can match below it.
  std::vector<std::string> lines =
      walk_unprivileged(f.job({"docs/**", "drafts/**"}, {"drafts/**"}), f.root);
  CHECK(lines == std::vector<std::string>{"doc docs/a.md"});
}

TEST_CASE("document source: a missing input folder is a fatal error, not an empty walk") {
  WalkFixture f;
  JobSpec spec = f.job({"**"});
  spec.input.dir = f.root + "/nope";
  Walk w = walk(spec);
  CHECK(w.relative.empty());
  CHECK(w.errors.empty());
  CHECK(w.fatal == "input.dir: read " + f.root + "/nope: No such file or directory");
}

TEST_CASE("document source: a wide folder is walked completely") {
  WalkFixture f;
  for (int i = 0; i < 3000; ++i) f.put("wide/f" + std::to_string(i) + ".md");
  Walk w = walk(f.job({"**/*.md"}));
  CHECK(w.relative.size() == 3000);
  CHECK(std::adjacent_find(w.relative.begin(), w.relative.end()) == w.relative.end());
}

TEST_CASE("document source: input.files yields each file named by its file name, in order") {
  JobSpec spec;
  spec.input.files = {"/data/x/b.md", "/data/a.txt", "/c"};
  std::unique_ptr<docpipe::DocumentSource> source = make_document_source(spec);
  std::vector<std::string> got;
  while (auto d = source->next()) got.push_back(d->input_path + " -> " + d->relative_path);
  CHECK(got == std::vector<std::string>{"/data/x/b.md -> b.md", "/data/a.txt -> a.txt", "/c -> c"});
  CHECK(source->errors().empty());
}

namespace {

// The walk and the reads of a job whose submitter is uid 4001, on a tree owned by root.
struct SubmitterFixture : WalkFixture {
  SubmitterFixture() {
    put("pub.txt", "public");
    put("priv.txt", "private");
    put("closed/x.txt", "x");
    put("open/y.txt", "y");
    make_tree_readable_by_others(in);
    ::chmod((in + "/priv.txt").c_str(), 0600);
    ::chmod((in + "/closed").c_str(), 0700);
    ::chmod(root.c_str(), 0755);
  }
  JobSpec submitted() const {
    JobSpec spec = job({"**"});
    spec.submitter = docpipe::Credentials{4001, 4001, {}};
    return spec;
  }
};

}  // namespace

TEST_CASE("document source: a submitter's rights decide which folders are walked and files read") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root (files the submitter may not read)");
    return;
  }
  SubmitterFixture f;
  const JobSpec spec = f.submitted();
  std::unique_ptr<docpipe::DocumentSource> source =
      make_document_source(spec, docpipe::SourceUse::kCount);
  std::map<std::string, DocumentRef> docs;
  while (std::optional<DocumentRef> d = source->next()) docs[d->relative_path] = *d;
  CHECK(docs.size() == 3);
  CHECK(docs.count("open/y.txt") == 1);
  CHECK(source->errors() ==
        std::vector<std::string>{f.in +
                                 "/closed: the submitter (uid 4001) may not list and search this "
                                 "folder, skipped"});
  const docpipe::Credentials* who = docpipe::restricted_submitter(spec);
  REQUIRE(who != nullptr);
  auto pub = docpipe::open_document(docs.at("pub.txt"), who);
  REQUIRE(pub);
  ::close(pub->fd);
  auto priv = docpipe::open_document(docs.at("priv.txt"), who);
  REQUIRE_FALSE(priv);
  CHECK(priv.error().message ==
        f.in + "/priv.txt: the submitter (uid 4001) may not read this file");
  // The daemon itself (no submitter) reads it.
  auto unrestricted = docpipe::open_document(docs.at("priv.txt"), nullptr);
  REQUIRE(unrestricted);
  ::close(unrestricted->fd);
}

TEST_CASE("document source: an input folder the submitter may not reach is a fatal error") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root");
    return;
  }
  SubmitterFixture f;
  JobSpec spec = f.submitted();
  spec.input.dir = f.in + "/closed";
  std::unique_ptr<docpipe::DocumentSource> source =
      make_document_source(spec, docpipe::SourceUse::kCount);
  CHECK_FALSE(source->next());
  REQUIRE(source->fatal_error());
  CHECK(source->fatal_error()->message ==
        "input.dir: " + f.in +
            "/closed: the submitter (uid 4001) may not list and search this folder");
}

TEST_CASE("document source: out of descriptors (EMFILE) is a fatal error, never an empty walk") {
  WalkFixture f;
  f.put("a.md");
  f.put("sub/b.md");
  const std::string text = output_of_child([&] {
    const JobSpec spec = f.job({"**"});
    std::unique_ptr<docpipe::DocumentSource> source =
        make_document_source(spec, docpipe::SourceUse::kCount);
    // No descriptor left above those open now.
    int probe = ::dup(0);
    struct rlimit limit {
      static_cast<rlim_t>(probe), static_cast<rlim_t>(probe)
    };
    ::close(probe);
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(3);
    std::string out;
    while (std::optional<DocumentRef> d = source->next()) out += "doc " + d->relative_path + "\n";
    if (source->fatal_error()) out += "fatal " + source->fatal_error()->message + "\n";
    return out;
  });
  CHECK(text.find("doc ") == std::string::npos);
  CHECK(text.find("fatal input.dir: ") != std::string::npos);
  CHECK(text.find("Too many open files") != std::string::npos);
}
