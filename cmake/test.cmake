# The README's second command, and CI's: builds the whole test suite and runs it in the plain,
# ASan+UBSan and TSan builds, fuzzes the decoder for a bounded time, and checks that nothing of
# ours is left in /dev/shm.
#   cmake -P cmake/test.cmake
include(${CMAKE_CURRENT_LIST_DIR}/Bootstrap.cmake)
mp_install_debian_packages(g++ clang libclang-rt-14-dev libboost1.81-dev libfmt-dev catch2)

function(mp_shm_entries out)
    file(GLOB entries LIST_DIRECTORIES true /dev/shm/mp-* /dev/shm/sem.mp-*)
    set(${out} "${entries}" PARENT_SCOPE)
endfunction()
mp_shm_entries(shm_before)

# The fuzzers are built first (clang only): a compile error there shows in a minute, not after
# the three suites.
if(EXISTS "${MP_ROOT}/tests/fuzz/CMakeLists.txt")
    mp_step(${CMAKE_COMMAND} -S tests/fuzz -B build/fuzz -D CMAKE_CXX_COMPILER=clang++
            -D CMAKE_BUILD_TYPE=RelWithDebInfo)
    mp_step(${CMAKE_COMMAND} --build build/fuzz -j ${MP_JOBS})
endif()

set(passed 0)
set(failed 0)
foreach(preset IN ITEMS default asan tsan)
    mp_step(${CMAKE_COMMAND} --preset ${preset})
    mp_step(${CMAKE_COMMAND} --build --preset ${preset} -j ${MP_JOBS})
    message(STATUS "+ ctest --preset ${preset}")
    execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --preset ${preset}
                    WORKING_DIRECTORY "${MP_ROOT}" RESULT_VARIABLE rc
                    OUTPUT_VARIABLE log ECHO_OUTPUT_VARIABLE)
    if(log MATCHES "([0-9]+) tests failed out of ([0-9]+)")
        math(EXPR passed "${passed} + ${CMAKE_MATCH_2} - ${CMAKE_MATCH_1}")
        math(EXPR failed "${failed} + ${CMAKE_MATCH_1}")
    endif()
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "the ${preset} test suite failed")
    endif()
endforeach()

if(EXISTS "${MP_ROOT}/tests/fuzz/CMakeLists.txt")
    # The decoder, and the authentication handshake and framing of Listener/Client.
    foreach(fuzzer IN ITEMS decode handshake)
        file(MAKE_DIRECTORY "${MP_ROOT}/build/fuzz/corpus-${fuzzer}")
        set(seeds fuzz_seeds)
        if(fuzzer STREQUAL "handshake")
            set(seeds fuzz_handshake_seeds)
        endif()
        mp_step(build/fuzz/${seeds} build/fuzz/corpus-${fuzzer})
        mp_step(build/fuzz/fuzz_${fuzzer} -max_total_time=45 -print_final_stats=1
                build/fuzz/corpus-${fuzzer})
    endforeach()
endif()

mp_shm_entries(shm_after)
list(REMOVE_ITEM shm_after ${shm_before})
if(shm_after)
    file(REMOVE_RECURSE ${shm_after})
    message(FATAL_ERROR "the test suite left these in /dev/shm: ${shm_after}")
endif()
message(STATUS "/dev/shm holds nothing of ours")

# The closing line CI reads: every ctest test of the three builds.
execute_process(COMMAND ${CMAKE_COMMAND} -E echo "suite: ${passed} passed, ${failed} failed")
