// Catch2's main. Its POSIX signal handlers are off: forked children inherit handlers, and a
// child killed by SIGTERM on purpose must die of SIGTERM, not report a failed test.
//
// MP_TEST_START_METHOD=fork|spawn|forkserver runs the same tests under that start method: the
// suite's parametrisation (tests/CMakeLists.txt registers the process, queue, synchronization and
// pool tests once per method), as CPython's test suite installs one body per method.
#define CATCH_CONFIG_RUNNER
#define CATCH_CONFIG_NO_POSIX_SIGNALS
#include <catch2/catch.hpp>

#include <cstdlib>

#include <multiprocessing/context.hpp>

namespace {
void nothing() {}
}  // namespace

int main(int argc, char* argv[]) {
    // test_context's "program without the bootstrap": a spawned image whose entry point did not
    // run lands here, in main(), and tries what a user's main would: start a process. The
    // fork-bomb guard must refuse (exit code 3 tells the parent's test that it did).
    if (std::getenv(multiprocessing::detail::spawn_env) &&
        std::getenv(multiprocessing::detail::skip_bootstrap_env)) {
        try {
            auto p = multiprocessing::get_context("spawn").Process(nothing);
            p.start();
            return 0;
        } catch (const multiprocessing::ProcessError&) {
            return 3;
        }
    }
    if (const char* method = std::getenv("MP_TEST_START_METHOD"))
        multiprocessing::set_start_method(std::string(method));
    return Catch::Session().run(argc, argv);
}
