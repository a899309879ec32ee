// The command line: validate, transforms, --version, usage errors, and submit to a running daemon.

#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <sstream>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

void write_inputs(const std::string& in) {
  write_file(in + "/x.txt", "x-ray\n");
  write_file(in + "/y.txt", "yankee\n");
  write_file(in + "/deep/z.txt", "zulu\n");
}

TEST_CASE("e2e cli: validate exits 0 for a valid job and 1 with file path reason lines") {
  TempDir tmp;
  write_inputs(tmp / "in");
  const std::string valid = tmp / "valid.json";
  write_file(valid, make_job("checked", tmp / "in", tmp / "out").dump(2));
  nlohmann::json bad = make_job("bad", tmp / "in", tmp / "out");
  bad["input"]["inclde"] = {"*.txt"};
  bad["priority"] = "high";
  const std::string invalid = tmp / "invalid.json";
  write_file(invalid, bad.dump(2));

  CommandResult ok = docpipe({"validate", valid}, tmp.path());
  INFO("stdout: " << ok.out << "\nstderr: " << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == valid + ": valid, job \"checked\", 3 document(s)\n");

  CommandResult no = docpipe({"validate", invalid}, tmp.path());
  INFO("stdout: " << no.out << "\nstderr: " << no.err);
  CHECK(no.exit_code == 1);
  std::vector<std::string> lines = lines_of(no.out);
  CHECK(lines.size() == 2);
  std::set<std::string> paths;
  for (const std::string& line : lines) {
    // FILE: JSON.PATH: REASON
    std::smatch m;
    REQUIRE(std::regex_match(line, m, std::regex("(.*\\.json): ([A-Za-z0-9_.\\[\\]]+): (.+)")));
    CHECK(m[1] == invalid);
    paths.insert(m[2]);
  }
  CHECK(paths == std::set<std::string>{"input.inclde", "priority"});

  // Several files: every one is reported, and one invalid file makes the exit code 1.
  CommandResult both = docpipe({"validate", valid, invalid}, tmp.path());
  CHECK(both.exit_code == 1);
  CHECK(lines_of(both.out).size() == 3);
  CHECK(lines_of(both.out).front() == valid + ": valid, job \"checked\", 3 document(s)");

  CommandResult missing = docpipe({"validate", tmp / "absent.json"}, tmp.path());
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.rfind(tmp / "absent.json: ", 0) == 0);
}

TEST_CASE("e2e cli: transforms --json lists the transforms with their parameters") {
  TempDir tmp;
  CommandResult r = docpipe({"transforms", "--json"}, tmp.path());
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  nlohmann::json list = nlohmann::json::parse(r.out);
  REQUIRE(list.is_array());
  std::map<std::string, nlohmann::json> by_op;
  for (const nlohmann::json& t : list) by_op[t.at("op").get<std::string>()] = t;
  for (const char* op : {"identity", "gzip", "gunzip", "redact"}) {
    INFO(op);
    REQUIRE(by_op.count(op) == 1);
    CHECK(by_op[op]["description"].is_string());
    CHECK(by_op[op]["streaming"].is_boolean());
    CHECK(by_op[op]["params"].is_array());
  }
  CHECK(by_op["identity"]["params"].empty());
  auto params = [&](const char* op) {
    std::map<std::string, nlohmann::json> out;
    for (const nlohmann::json& p : by_op[op]["params"]) out[p.at("name").get<std::string>()] = p;
    return out;
  };
  auto gzip = params("gzip");
  REQUIRE(gzip.count("level") == 1);
  CHECK(gzip["level"]["type"] == "integer");
  CHECK(gzip["level"]["default"] == 6);
  auto redact = params("redact");
  REQUIRE(redact.count("patterns") == 1);
  REQUIRE(redact.count("custom") == 1);
  REQUIRE(redact.count("replacement") == 1);
  CHECK(redact["replacement"]["default"] == "[REDACTED]");
  CHECK(redact["patterns"]["type"] == "array<string>");

  // The text form has a line per transform that starts with its name.
  CommandResult text = docpipe({"transforms"}, tmp.path());
  CHECK(text.exit_code == 0);
  std::set<std::string> listed;
  for (const std::string& line : lines_of(text.out)) {
    if (!line.empty() && line[0] != ' ') listed.insert(line.substr(0, line.find(' ')));
  }
  for (const char* op : {"identity", "gzip", "gunzip", "redact"}) CHECK(listed.count(op) == 1);
}

TEST_CASE("e2e cli: --version prints the version and usage errors exit 2") {
  TempDir tmp;
  CommandResult version = docpipe({"--version"}, tmp.path());
  CHECK(version.exit_code == 0);
  CHECK(std::regex_match(version.out, std::regex("docpipe [0-9]+\\.[0-9]+\\.[0-9]+\n")));

  const std::vector<std::vector<std::string>> usage_errors{
      {},                                    // no command
      {"frobnicate"},                        // unknown command
      {"validate"},                          // missing JOB.json
      {"run", "--workers", "two"},           // not a number
      {"run", "--durability", "sometimes"},  // not a choice
      {"transforms", "--no-such-flag"},
  };
  for (const auto& args : usage_errors) {
    std::string shown;
    for (const auto& a : args) shown += " " + a;
    INFO("docpipe" << shown);
    CommandResult r = docpipe(args, tmp.path());
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_FALSE(r.err.empty());
  }
}

// Relative paths in a submitted job resolve against the job file's folder, not incoming/.
nlohmann::json relative_gzip_job(const char* output_dir) {
  return nlohmann::json{{"input", {{"dir", "../in"}}},
                        {"output", {{"dir", output_dir}, {"suffix", ".gz"}}},
                        {"transforms", {{{"op", "gzip"}, {"level", 1}}}}};
}

void check_gzip_outputs(const std::string& out) {
  CHECK(list_files(out) == std::vector<std::string>{"deep/z.txt.gz", "x.txt.gz", "y.txt.gz"});
  CHECK(gunzip(read_file(out + "/deep/z.txt.gz")) == "zulu\n");
  CHECK(gunzip(read_file(out + "/x.txt.gz")) == "x-ray\n");
  CHECK(gunzip(read_file(out + "/y.txt.gz")) == "yankee\n");
}

TEST_CASE("e2e cli: submit hands a job to the running daemon which completes it") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_inputs(tmp / "in");
  DaemonProcess daemon(spool, {});
  daemon.start();

  write_file(tmp / "jobs/submitted.json", relative_gzip_job("../out").dump(2));
  CommandResult r = docpipe({"submit", "--spool", spool, tmp / "jobs/submitted.json"}, tmp.path());
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("submitted job \"submitted\" (3 document(s))", 0) == 0);
  JobOutcome outcome = daemon.wait_for_job("submitted");
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == 3);
  CHECK(outcome.report["input"] == tmp / "in");
  check_gzip_outputs(tmp / "out");

  // --wait returns once the job has finished, with exit code 0 because it succeeded.
  write_file(tmp / "jobs/waited.json", relative_gzip_job("../out-waited").dump(2));
  CommandResult w =
      docpipe({"submit", "--wait", "--spool", spool, tmp / "jobs/waited.json"}, tmp.path());
  INFO("stdout: " << w.out << "\nstderr: " << w.err);
  CHECK(w.exit_code == 0);
  CHECK(file_exists(spool + "/done/waited.report.json"));
  check_gzip_outputs(tmp / "out-waited");

  // An invalid job is refused at submission and never reaches the spool.
  nlohmann::json broken = relative_gzip_job("../out-broken");
  broken["transforms"] = {{{"op", "gzip"}, {"level", 42}}};
  write_file(tmp / "jobs/broken.json", broken.dump(2));
  CommandResult bad = docpipe({"submit", "--spool", spool, tmp / "jobs/broken.json"}, tmp.path());
  INFO("stdout: " << bad.out << "\nstderr: " << bad.err);
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find(tmp / "jobs/broken.json: transforms[0].level: ") != std::string::npos);
  CHECK(list_files(spool + "/incoming").empty());
  CHECK(list_files(spool + "/rejected").empty());
  CHECK_FALSE(file_exists(tmp / "out-broken"));
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e cli: submit without a running daemon drops the job for its next start") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_inputs(tmp / "in");
  {
    DaemonProcess earlier(spool, {});  // creates the spool, then is gone
    earlier.start();
    REQUIRE(earlier.terminate() == 0);
  }
  write_file(tmp / "jobs/dropped.json", relative_gzip_job("../out").dump(2));
  CommandResult r = docpipe({"submit", "--spool", spool, tmp / "jobs/dropped.json"}, tmp.path());
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "submitted job \"dropped\" (3 document(s)) to " + spool + "/incoming/dropped.json\n");
  CHECK(list_files(spool + "/incoming") == std::vector<std::string>{"dropped.json"});

  DaemonProcess daemon(spool, {});
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("dropped");
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["input"] == tmp / "in");
  check_gzip_outputs(tmp / "out");
  CHECK(daemon.terminate() == 0);
}

}  // namespace
TEST_CASE("e2e cli: submit --wait names each failed document once, with its error") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_file(tmp / "in/plain.txt", "not gzip at all\n");
  DaemonProcess daemon(spool, {});
  daemon.start();
  nlohmann::json job = make_job("unzipped", tmp / "in", tmp / "out", {{{"op", "gunzip"}}});
  write_file(tmp / "jobs/unzipped.json", job.dump(2));
  CommandResult w =
      docpipe({"submit", "--wait", "--spool", spool, tmp / "jobs/unzipped.json"}, tmp.path());
  INFO("stdout: " << w.out << "\nstderr: " << w.err);
  CHECK(w.exit_code == 1);
  const std::string input = tmp / "in/plain.txt";
  // The error names its document already ("INPUT: gunzip: ..."): the line must not repeat it.
  const std::string line = "  failed: " + input + ": gunzip: ";
  REQUIRE(w.out.find(line) != std::string::npos);
  CHECK(w.out.find(input + ": " + input) == std::string::npos);
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
