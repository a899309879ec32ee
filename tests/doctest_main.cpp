// The test binaries' main. A binary linked with the transforms can also serve as an isolated
// transform's worker (core/transforms/isolated_worker.h): the transforms re-execute
// /proc/self/exe, which is then this binary, with `__transform-worker ...`. Binaries without the
// transforms leave the weak symbol null.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

extern "C" int docpipe_run_transform_worker_if_asked(int argc, char** argv) __attribute__((weak));

int main(int argc, char** argv) {
  if (docpipe_run_transform_worker_if_asked != nullptr) {
    if (int rc = docpipe_run_transform_worker_if_asked(argc, argv); rc >= 0) return rc;
  }
  return doctest::Context(argc, argv).run();
}
