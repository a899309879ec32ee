#pragma once
// The names of pipeline_test_support.h that the pipeline test files use unqualified, declared
// once. Test-only: each test file that includes it gets its own copy in its anonymous namespace.

#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {  // NOLINT(google-build-namespaces): a test-only header

using testing::chain_of;
using testing::endless_job;
using testing::FakeJob;
using testing::FunctionStep;
using testing::Gate;
using testing::gated_copy;
using testing::make_content;
using testing::make_inputs;
using testing::make_spec;
using testing::OpenAtExit;
using testing::read_file;
using testing::sha256_hex;
using testing::anonymous_files_under;
using testing::temp_files_under;
using testing::TempDir;
using testing::test_options;
using testing::upper;
using testing::upper_step;
using testing::write_file;

}  // namespace
}  // namespace docpipe
