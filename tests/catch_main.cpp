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

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

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
    int failed = Catch::Session().run(argc, argv);
#if defined(__SANITIZE_ADDRESS__)
    // Leaks are checked here, in the test process, not at every exit (ASAN_OPTIONS has
    // leak_check_at_exit=0): a child forked from a multithreaded parent holds memory reachable
    // only from threads it does not have, and a task that calls exit() must not report it.
    if (__lsan_do_recoverable_leak_check()) failed = failed ? failed : 1;
#endif
    return failed;
}
