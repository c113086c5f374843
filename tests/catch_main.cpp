// Catch2's main. Its POSIX signal handlers are off: forked children inherit handlers, and a
// child killed by SIGTERM on purpose must die of SIGTERM, not report a failed test.
#define CATCH_CONFIG_MAIN
#define CATCH_CONFIG_NO_POSIX_SIGNALS
#include <catch2/catch.hpp>
