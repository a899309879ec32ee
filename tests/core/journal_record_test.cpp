// The journal's record types (core/journal_record.h): each kind round-trips through to_json and
// the one parser, the bytes keep today's field order and escapes (the manifest lines are these
// payloads), and what the parser makes of missing, unknown and wrongly typed fields.

#include "core/journal_record.h"

#include <doctest/doctest.h>

#include <bit>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <variant>

#include "core/journal.h"

namespace docpipe {
namespace {

template <typename T>
T parse_as(const std::string& payload) {
  Result<JournalRecord> r = parse_journal_record(payload);
  REQUIRE(r);
  REQUIRE(std::holds_alternative<T>(*r));
  return std::get<T>(*r);
}

DocumentRecord full_document() {
  return DocumentRecord{.input = "/in/a.md",
                        .output = "/out/a.md.html",
                        .state = RecordState::kSucceeded,
                        .bytes_in = 4096,
                        .bytes_out = 5000,
                        .sha256 = std::string(64, 'f'),
                        .metadata = "",
                        .attempts = 2,
                        .duration_seconds = 0.25,
                        .error = ""};
}

IntentRecord sample_intent() {
  return IntentRecord{.input = "/a",
                      .output = "/o/a",
                      .sha256 = "ab",
                      .bytes_in = 3,
                      .bytes_out = 4,
                      .attempts = 2,
                      .metadata = ""};
}

TEST_CASE("journal record: a document record is written field by field in the manifest's order") {
  CHECK(full_document().to_json() ==
        R"({"input":"/in/a.md","output":"/out/a.md.html","state":"succeeded","bytes_in":4096,)"
        R"("bytes_out":5000,"sha256":")" +
            std::string(64, 'f') + R"(","attempts":2,"duration_seconds":0.25,"error":""})");
  DocumentRecord zero;
  CHECK(zero.to_json() ==
        R"({"input":"","output":"","state":"failed","bytes_in":0,"bytes_out":0,"sha256":"",)"
        R"("attempts":1,"duration_seconds":0.0,"error":""})");
}

TEST_CASE("journal record: a transform's metadata is written after sha256 and read back") {
  DocumentRecord d = full_document();
  d.metadata = R"({"author":"Ann","pages":2,"title":"Q1 \"draft\""})";
  const std::string text = d.to_json();
  CHECK(
      text.find(R"("sha256":")" + std::string(64, 'f') +
                R"(","metadata":{"author":"Ann","pages":2,"title":"Q1 \"draft\""},"attempts":2)") !=
      std::string::npos);
  CHECK(nlohmann::json::parse(text)["metadata"]["pages"] == 2);
  CHECK(parse_as<DocumentRecord>(text).metadata == d.metadata);
  IntentRecord i = sample_intent();
  i.metadata = R"({"pages":1})";
  CHECK(i.to_json().ends_with(R"("attempts":2,"metadata":{"pages":1}})"));
  CHECK(parse_as<IntentRecord>(i.to_json()).metadata == i.metadata);
  // Not an object: dropped, the record still reads.
  CHECK(parse_as<DocumentRecord>(R"({"input":"/a","state":"succeeded","metadata":[1]})")
            .metadata.empty());
  // Without metadata nothing is written (the lines of every other transform are unchanged).
  CHECK(full_document().to_json().find("metadata") == std::string::npos);
}

TEST_CASE("journal record: header and intent records are written in their fixed order") {
  CHECK(JournalHeader{.id = "job-1", .submitted_at_ms = 1234}.to_json() ==
        R"({"id":"job-1","journal":1,"submitted_at_ms":1234})");
  // The journal tells intents apart by this prefix without parsing (JobJournal::is_intent).
  CHECK(JobJournal::is_intent(sample_intent().to_json()));
  CHECK_FALSE(JobJournal::is_intent(DocumentRecord{}.to_json()));
  CHECK(sample_intent().to_json() ==
        R"({"intent":"commit","input":"/a","output":"/o/a","sha256":"ab","bytes_in":3,)"
        R"("bytes_out":4,"attempts":2})");
}

TEST_CASE("journal record: every field of each kind survives a round trip") {
  DocumentRecord d = full_document();
  d.state = RecordState::kFailed;
  d.error = "transform: \"bad\" input";
  DocumentRecord d2 = parse_as<DocumentRecord>(d.to_json());
  CHECK(d2.input == d.input);
  CHECK(d2.output == d.output);
  CHECK(d2.state == RecordState::kFailed);
  CHECK(d2.bytes_in == 4096);
  CHECK(d2.bytes_out == 5000);
  CHECK(d2.sha256 == d.sha256);
  CHECK(d2.attempts == 2);
  CHECK(d2.duration_seconds == doctest::Approx(0.25));
  CHECK(d2.error == d.error);
  CHECK(d2.to_json() == d.to_json());
  for (RecordState s : {RecordState::kSucceeded, RecordState::kSkipped, RecordState::kFailed}) {
    d.state = s;
    CHECK(parse_as<DocumentRecord>(d.to_json()).state == s);
  }

  IntentRecord i2 = parse_as<IntentRecord>(sample_intent().to_json());
  CHECK(i2.input == "/a");
  CHECK(i2.output == "/o/a");
  CHECK(i2.sha256 == "ab");
  CHECK(i2.bytes_in == 3);
  CHECK(i2.bytes_out == 4);
  CHECK(i2.attempts == 2);

  JournalHeader h =
      parse_as<JournalHeader>(JournalHeader{.id = "x", .submitted_at_ms = 42}.to_json());
  CHECK(h.version == 1);
  CHECK(h.id == "x");
  CHECK(h.submitted_at_ms == 42);
}

TEST_CASE("journal record: missing fields take their defaults, unknown fields are ignored") {
  DocumentRecord d = parse_as<DocumentRecord>(R"({"input":"/a","colour":"blue","extra":[1]})");
  CHECK(d.input == "/a");
  CHECK(d.output.empty());
  CHECK(d.state == RecordState::kFailed);  // no state: not known to be done well
  CHECK(d.bytes_in == 0);
  CHECK(d.attempts == 1);
  CHECK(d.error.empty());
  CHECK(parse_as<DocumentRecord>(R"({"input":"/a","state":"melted"})").state ==
        RecordState::kFailed);
  IntentRecord i = parse_as<IntentRecord>(R"({"intent":"commit","input":"/b"})");
  CHECK(i.input == "/b");
  CHECK(i.sha256.empty());
  CHECK(i.attempts == 1);
  CHECK(parse_as<JournalHeader>(R"({"journal":1})").submitted_at_ms == 0);
  CHECK(parse_as<JournalHeader>(R"({"id":"x","journal":1,"future":true})").id == "x");
  CHECK(parse_as<JournalHeader>(R"({"journal":2})").version == 2);  // the scan refuses it
}

TEST_CASE("journal record: a payload that is not a JSON object is refused") {
  for (const char* bad : {"", "[1,2]", "\"text\"", "42", "{\"input\":", "null"}) {
    CAPTURE(bad);
    Result<JournalRecord> r = parse_journal_record(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kCorruptInput);
  }
}

TEST_CASE("journal record: a field of the wrong type is refused, naming the field") {
  struct Case {
    const char* payload;
    const char* field;
  };
  for (const Case& c :
       {Case{R"({"input":7})", "input"}, Case{R"({"input":"/a","bytes_in":"10"})", "bytes_in"},
        Case{R"({"input":"/a","state":true})", "state"},
        Case{R"({"input":"/a","duration_seconds":null})", "duration_seconds"},
        Case{R"({"intent":"commit","attempts":"2"})", "attempts"},
        Case{R"({"intent":"commit","sha256":1})", "sha256"}, Case{R"({"journal":"1"})", "journal"},
        Case{R"({"journal":1,"submitted_at_ms":"5"})", "submitted_at_ms"}}) {
    CAPTURE(c.payload);
    Result<JournalRecord> r = parse_journal_record(c.payload);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kCorruptInput);
    CHECK(r.error().message.find(std::string("\"") + c.field + "\"") != std::string::npos);
  }
}

TEST_CASE("journal record: NUL and control bytes are escaped, invalid UTF-8 becomes U+FFFD") {
  DocumentRecord d;
  d.input = std::string("/in/a\0b", 7);
  d.output = "/out/\xff\xfe.txt";  // not UTF-8: replaced, never refused
  d.error = "tab\there\x01";
  const std::string json = d.to_json();
  CHECK(json.find(R"("input":"/in/a\u0000b")") != std::string::npos);
  CHECK(json.find("\"output\":\"/out/\xEF\xBF\xBD\xEF\xBF\xBD.txt\"") != std::string::npos);
  CHECK(json.find(R"("error":"tab\there\u0001")") != std::string::npos);
  DocumentRecord back = parse_as<DocumentRecord>(json);
  CHECK(back.input == std::string("/in/a\0b", 7));
  CHECK(back.output == "/out/\xEF\xBF\xBD\xEF\xBF\xBD.txt");
  CHECK(back.error == "tab\there\x01");
  IntentRecord i;
  i.input = "\xc3";  // a cut multi-byte sequence
  CHECK(i.to_json().find("\"input\":\"\xEF\xBF\xBD\"") != std::string::npos);
}

// to_json writes records without building a json value; nlohmann's dump of the same object is
// the reference, byte for byte, over every byte value in strings and doubles of every magnitude.
TEST_CASE("journal record: records are byte for byte what nlohmann's dump writes") {
  std::mt19937_64 rng(12345);
  auto random_text = [&] {
    std::string t(rng() % 24, '\0');
    for (char& c : t) {
      // Half printable ASCII (the common path), half any byte at all.
      c = static_cast<char>(rng() % 2 ? 0x20 + rng() % 95 : rng() % 256);
    }
    return t;
  };
  auto reference = [](const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  const double doubles[] = {0.0,
                            -0.0,
                            1.0,
                            0.25,
                            1e-7,
                            123456.789,
                            1e300,
                            3.0e-5,
                            2.5e15,
                            1.0 / 3,
                            -42.5,
                            std::numeric_limits<double>::denorm_min(),
                            std::numeric_limits<double>::max(),
                            std::numeric_limits<double>::quiet_NaN(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity()};
  // Half the records take a listed double (scaled), half any bit pattern at all.
  auto random_double = [&](int i) {
    if (i % 2 == 0) return doubles[i / 2 % std::size(doubles)] * (1 + i % 7);
    return std::bit_cast<double>(rng());
  };
  for (int i = 0; i < 4000; ++i) {
    DocumentRecord d{
        .input = random_text(),
        .output = random_text(),
        .state = static_cast<RecordState>(rng() % 3),
        .bytes_in = rng(),
        .bytes_out = rng() % 100000,
        .sha256 = random_text(),
        .metadata = i % 3 == 0
                        ? nlohmann::json{{"pages", rng() % 1000}, {"title", random_text()}}.dump(
                              -1, ' ', false, nlohmann::json::error_handler_t::replace)
                        : std::string(),
        .attempts = static_cast<int>(rng() % 101),
        .duration_seconds = random_double(i),
        .error = random_text()};
    nlohmann::ordered_json j;
    j["input"] = d.input;
    j["output"] = d.output;
    j["state"] = record_state_name(d.state);
    j["bytes_in"] = d.bytes_in;
    j["bytes_out"] = d.bytes_out;
    j["sha256"] = d.sha256;
    if (!d.metadata.empty()) j["metadata"] = nlohmann::ordered_json::parse(d.metadata);
    j["attempts"] = d.attempts;
    j["duration_seconds"] = d.duration_seconds;
    j["error"] = d.error;
    REQUIRE(d.to_json() == reference(j));

    IntentRecord r{.input = random_text(),
                   .output = random_text(),
                   .sha256 = random_text(),
                   .bytes_in = rng(),
                   .bytes_out = rng(),
                   .attempts = static_cast<int>(rng() % 101),
                   .metadata = ""};
    nlohmann::ordered_json k;
    k["intent"] = "commit";
    k["input"] = r.input;
    k["output"] = r.output;
    k["sha256"] = r.sha256;
    k["bytes_in"] = r.bytes_in;
    k["bytes_out"] = r.bytes_out;
    k["attempts"] = r.attempts;
    REQUIRE(r.to_json() == reference(k));
  }
}

}  // namespace
}  // namespace docpipe
