#pragma once
// A fresh folder for one test (mkdtemp), removed with everything in it when the test ends, and
// the two questions tests ask of files: what a file holds, and which names a folder holds.

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace docpipe::test {

class TempFolder {
 public:
  explicit TempFolder(const std::string& under = "/tmp", const std::string& tag = "test") {
    std::string tmpl = under + "/docpipe-" + tag + "-XXXXXX";
    root_ = ::mkdtemp(tmpl.data());
  }
  ~TempFolder() { std::filesystem::remove_all(root_); }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;

  const std::string& root() const { return root_; }

  // The whole content ("" if it cannot be read).
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void write(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  }
  // Every name in `dir` (temp files included), sorted.
  static std::vector<std::string> names(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      out.push_back(e.path().filename());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string root_;
};

}  // namespace docpipe::test
