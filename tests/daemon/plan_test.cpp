// docpipe plan's classification (daemon/plan.h) over real files and a real lineage store: each
// document lands in the class the run would give it, inputs are hashed only when their stat
// differs, orphans are counted, the listing is capped while the counts stay whole, and the
// estimate comes from what was measured.

#include "daemon/plan.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <utime.h>

#include <set>
#include <string>

#include "core/chain_fingerprint.h"
#include "daemon/intake.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

using test::TempFolder;

JobSpec spec_for(const std::string& in, const std::string& out, const std::string& if_exists) {
  FieldErrors errors;
  std::optional<JobSpec> spec =
      parse_job(R"({"id":"p","input":{"dir":")" + in + R"("},"output":{"dir":")" + out +
                    R"(","if_exists":")" + if_exists + R"("}})",
                {.default_id = "p", .base_dir = "/"}, errors);
  REQUIRE_MESSAGE(spec, join_field_errors(errors));
  return std::move(*spec);
}

FileStamp stamp(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return stamp_of(st);
}

// A row as the run would have written it for a copy of `name`.
LineageRow row(const std::string& in, const std::string& out, const std::string& name,
               const std::string& chain) {
  const std::string content = TempFolder::read(in + "/" + name);
  return LineageRow{.output = out + "/" + name,
                    .job_id = "earlier",
                    .input = in + "/" + name,
                    .input_sha256 = sha256_hex(content),
                    .input_stamp = stamp(in + "/" + name),
                    .chain = chain,
                    .finished_at_ms = 1,
                    .output_sha256 = sha256_hex(content),
                    .output_stamp = stamp(out + "/" + name)};
}

struct Fixture {
  TempFolder dir;
  std::string in = dir.root() + "/in", out = dir.root() + "/out";
  std::unique_ptr<LineageStore> store;
  JobSpec spec;

  Fixture() {
    ::mkdir(in.c_str(), 0755);
    ::mkdir(out.c_str(), 0755);
    for (const char* name : {"a", "b", "c", "d", "e"}) {
      TempFolder::write(in + "/" + name, std::string("content of ") + name);
    }
    for (const char* name : {"a", "b", "c", "e"}) {
      TempFolder::write(out + "/" + name, std::string("content of ") + name);
    }
    auto opened = LineageStore::open(dir.root() + "/lineage.sqlite", false);
    REQUIRE(opened);
    store = std::move(*opened);
    spec = spec_for(in, out, "unchanged");
    std::vector<LineageRow> rows{row(in, out, "a", spec.chain_fingerprint),
                                 row(in, out, "b", spec.chain_fingerprint),
                                 row(in, out, "c", std::string(64, '0'))};
    LineageRow orphan = rows[0];
    orphan.output = out + "/z";
    orphan.input = in + "/z";
    rows.push_back(orphan);
    REQUIRE(store->upsert(rows));
    // b: touched (a new mtime, the same bytes): unchanged, but only its hash can tell.
    struct utimbuf t {
      .actime = 1000000000, .modtime = 1000000000
    };
    REQUIRE(::utime((in + "/b").c_str(), &t) == 0);
  }
};

TEST_CASE("plan: each document is classified as the run would and orphans are counted") {
  Fixture f;
  PlanCounts c;
  nlohmann::json p = plan_job(f.spec, f.store.get(), 100, {}, &c);
  CHECK(c.total == 5);
  CHECK(c.unchanged == 2);  // a by its stat, b by its hash
  CHECK(c.hashed == 1);
  CHECK(c.changed == 1);          // c: another chain
  CHECK(c.new_documents == 1);    // d: no output
  CHECK(c.would_overwrite == 1);  // e: an output with no record
  CHECK(c.orphans == 1);
  CHECK(c.bytes_to_process == 3 * std::string("content of c").size());
  CHECK(p["would_change"] == true);
  std::set<std::string> listed;
  for (const auto& d : p["documents"]) {
    listed.insert(d["action"].get<std::string>() + " " + d["input"].get<std::string>());
  }
  CHECK(listed == std::set<std::string>{"changed " + f.in + "/c", "new " + f.in + "/d",
                                        "would overwrite " + f.in + "/e"});
  CHECK(p["orphans"][0]["output"] == f.out + "/z");
  CHECK(p["estimate_seconds"].is_null());
}

TEST_CASE("plan: a restricted caller is told only of orphans it could see for itself") {
  if (::geteuid() != 0) return;  // files of root's that uid 65534 may not read
  Fixture f;
  REQUIRE(::chmod(f.dir.root().c_str(), 0755) == 0);
  // z (the fixture's): readable output, input folder searchable: anyone may see it is gone.
  TempFolder::write(f.out + "/z", "content of a");
  // y: its input was in a folder nobody may search; x: its output is root's alone.
  const std::string secret = f.dir.root() + "/secret";
  REQUIRE(::mkdir(secret.c_str(), 0700) == 0);
  TempFolder::write(f.out + "/y", "y");
  TempFolder::write(f.out + "/x", "x");
  REQUIRE(::chmod((f.out + "/x").c_str(), 0600) == 0);
  LineageRow y = row(f.in, f.out, "a", f.spec.chain_fingerprint);
  y.output = f.out + "/y";
  y.input = secret + "/y";
  LineageRow x = y;
  x.output = f.out + "/x";
  x.input = f.in + "/x";
  REQUIRE(f.store->upsert({y, x}));
  PlanCounts all;
  plan_job(f.spec, f.store.get(), 100, {}, &all);
  CHECK(all.orphans == 3);
  f.spec.submitter = Credentials{65534, 65534, {}};
  PlanCounts seen;
  nlohmann::json p = plan_job(f.spec, f.store.get(), 100, {}, &seen);
  CHECK(seen.orphans == 1);
  REQUIRE(p["orphans"].size() == 1);
  CHECK(p["orphans"][0]["output"] == f.out + "/z");
  CHECK(p.dump().find("secret") == std::string::npos);
}

TEST_CASE("plan: an input changed in content, or an output edited, is changed") {
  Fixture f;
  TempFolder::write(f.in + "/a", "new content of a");
  TempFolder::write(f.out + "/b", "edited by hand");
  PlanCounts c;
  nlohmann::json p = plan_job(f.spec, f.store.get(), 100, {}, &c);
  CHECK(c.unchanged == 0);
  CHECK(c.changed == 3);
  CHECK(c.hashed == 1);  // a; b's output differs before its input is looked at
}

TEST_CASE("plan: the listing is capped and the counts stay whole") {
  Fixture f;
  PlanCounts c;
  nlohmann::json p = plan_job(f.spec, f.store.get(), 1, {}, &c);
  CHECK(p["documents"].size() == 1);
  CHECK(p["documents_truncated"] == true);
  CHECK(c.changed + c.new_documents + c.would_overwrite == 3);
}

TEST_CASE("plan: replace and skip jobs need no record; nothing to do exits clean") {
  Fixture f;
  PlanCounts c;
  plan_job(spec_for(f.in, f.out, "replace"), f.store.get(), 10, {}, &c);
  CHECK(c.would_overwrite == 4);
  CHECK(c.new_documents == 1);
  plan_job(spec_for(f.in, f.out, "skip"), f.store.get(), 10, {}, &c);
  CHECK(c.exists == 4);
  CHECK(c.new_documents == 1);
  TempFolder::write(f.out + "/d", "x");
  plan_job(spec_for(f.in, f.out, "skip"), f.store.get(), 10, {}, &c);
  CHECK(!c.would_change());
}

TEST_CASE("plan: the estimate divides the bytes to process by the measured rate") {
  Fixture f;
  PlanCounts c;
  nlohmann::json p =
      plan_job(f.spec, f.store.get(), 10, {.job_seconds = 2, .bytes_in = 12, .documents = 3}, &c);
  // 36 bytes at 6 bytes/s.
  CHECK(p["estimate_seconds"].get<double>() == doctest::Approx(6.0));
}

TEST_CASE("plan: if_exists unchanged is refused in cluster mode and names the field") {
  DaemonConfig config;
  config.cluster.enabled = true;
  FieldErrors errors;
  auto v = validate_job_text(
      R"({"id":"c","input":{"dir":"/tmp"},"output":{"dir":"/tmp/o","if_exists":"unchanged"}})",
      "c", "/", config, errors);
  CHECK(!v);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "output.if_exists");
  CHECK(errors[0].reason.find("not available in cluster mode") != std::string::npos);
  // The same job on a single node passes.
  Fixture f;
  config.cluster.enabled = false;
  errors.clear();
  auto single = validate_job_text(R"({"id":"c","input":{"dir":")" + f.in +
                                      R"("},"output":{"dir":")" + f.out +
                                      R"(","if_exists":"unchanged"}})",
                                  "c", "/", config, errors);
  CHECK_MESSAGE(single, join_field_errors(errors));
}

}  // namespace
}  // namespace docpipe
