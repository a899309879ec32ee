#include "core/manifest_writer.h"

#include <nlohmann/json.hpp>
#include <unordered_map>
#include <variant>

#include "core/fs_util.h"
#include "core/journal.h"
#include "core/journal_record.h"

namespace docpipe {

namespace {

// The input a document record names; "" for a record that does not parse (it is still listed,
// as it always was: the manifest copies what the journal holds).
std::string input_of(std::string_view payload) {
  Result<JournalRecord> r = parse_journal_record(payload);
  if (!r || !std::holds_alternative<DocumentRecord>(*r)) return {};
  return std::move(std::get<DocumentRecord>(*r).input);
}

// The outcome of each input's last finished action, as the manifest field's JSON text.
Status input_action_outcomes(const std::string& journal_path,
                             std::unordered_map<std::string, std::string>& out) {
  Result<JournalScan> scanned = JobJournal::scan(journal_path, [&](std::string_view payload) {
    if (!JobJournal::is_intent(payload)) return;
    Result<JournalRecord> r = parse_journal_record(payload);
    if (!r || !std::holds_alternative<InputActionRecord>(*r)) return;
    const InputActionRecord& a = std::get<InputActionRecord>(*r);
    if (a.step == InputActionRecord::Step::kBegin) return;
    auto quoted = [](const std::string& text) {
      return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    std::string field = "{\"action\":" + quoted(a.action) + ",\"outcome\":" +
                        (a.step == InputActionRecord::Step::kDone ? "\"done\"" : "\"failed\"");
    if (!a.error.empty()) field += ",\"error\":" + quoted(a.error);
    field += '}';
    out[a.input] = std::move(field);
  });
  if (!scanned) return scanned.error();
  return ok();
}

}  // namespace

Status write_manifest(const std::string& journal_path, const std::string& manifest_path,
                      const std::unordered_set<std::string>& superseded, bool durable,
                      bool with_input_actions) {
  std::unordered_map<std::string, std::string> actions;
  if (with_input_actions) {
    if (Status read = input_action_outcomes(journal_path, actions); !read) return read;
  }
  // Records of a superseded input to leave out: all but its last. Counted in a first pass, which
  // only runs (and only remembers anything) when some input was done twice.
  std::unordered_map<std::string, uint64_t> skip;
  if (!superseded.empty()) {
    Result<JournalScan> counted = JobJournal::scan(journal_path, [&](std::string_view payload) {
      if (JobJournal::is_intent(payload)) return;
      std::string input = input_of(payload);
      if (superseded.count(input) != 0) ++skip[input];
    });
    if (!counted) return counted.error();
    for (auto& [input, n] : skip) --n;
  }
  Result<AtomicFileWriter> out = AtomicFileWriter::create(manifest_path, durable);
  if (!out) return out.error();
  Status written = ok();
  Result<JournalScan> scanned = JobJournal::scan(journal_path, [&](std::string_view payload) {
    if (!written || JobJournal::is_intent(payload)) return;
    if (!skip.empty()) {
      auto it = skip.find(input_of(payload));
      if (it != skip.end() && it->second > 0) {
        --it->second;
        return;
      }
    }
    if (!actions.empty() && payload.ends_with('}')) {
      auto it = actions.find(input_of(payload));
      if (it != actions.end()) {
        written = out->write(payload.substr(0, payload.size() - 1));
        if (written) written = out->write(",\"input_action\":" + it->second + "}\n");
        return;
      }
    }
    written = out->write(payload);
    if (written) written = out->write("\n");
  });
  if (!scanned) return scanned.error();  // `out` is dropped: its temp file goes with it
  if (!written) return written.error();
  return out->commit();
}

}  // namespace docpipe
