# Runs one translated seed example and compares its standard output with the Python original's,
# by the rule of ../shared/seed-examples/README.md. Expected outputs come from the shared seed
# folder when it is there (CI has it), else from this project's own copy in tests/expected/.
#   cmake -D program=... -D name=NN_name -D seed_dir=... -D own_dir=... -P compare_output.cmake
if(EXISTS "${seed_dir}/${name}.out")
    file(READ "${seed_dir}/${name}.out" expected)
else()
    file(READ "${own_dir}/${name}.out" expected)
endif()

execute_process(COMMAND "${program}" OUTPUT_VARIABLE actual ERROR_VARIABLE errors
                RESULT_VARIABLE status TIMEOUT 50)
if(NOT status EQUAL 0)
    message(FATAL_ERROR "${name} exited with ${status}\nstdout:\n${actual}\nstderr:\n${errors}")
endif()

function(lines_of text out)
    string(REGEX REPLACE "\n$" "" text "${text}")
    string(REPLACE ";" "\\;" text "${text}")
    string(REPLACE "\n" ";" text "${text}")
    set(${out} "${text}" PARENT_SCOPE)
endfunction()

lines_of("${expected}" want)
lines_of("${actual}" got)

set(ok FALSE)
if(actual STREQUAL expected)
    set(ok TRUE)
elseif(name STREQUAL "05_lock_counter")
    # The other process may take the lock first.
    if(actual STREQUAL "4\n8\n12\n16\n20\n21\n22\n23\n24\n25\n")
        set(ok TRUE)
    endif()
elseif(name STREQUAL "10_workers_start_end")
    # The same lines in any order, but the final line last.
    list(GET want -1 want_last)
    list(GET got -1 got_last)
    set(want_sorted ${want})
    set(got_sorted ${got})
    list(SORT want_sorted)
    list(SORT got_sorted)
    if(got_last STREQUAL want_last AND got_sorted STREQUAL want_sorted)
        set(ok TRUE)
    endif()
elseif(name STREQUAL "11_lock_try_finally")
    # The two processes' line pairs in either order, never interleaved; the final line last.
    list(LENGTH want n)
    if(n EQUAL 5)
        list(SUBLIST want 0 2 first)
        list(SUBLIST want 2 2 second)
        list(GET want 4 last)
        set(swapped ${second} ${first} ${last})
        if(got STREQUAL swapped)
            set(ok TRUE)
        endif()
    endif()
endif()

if(NOT ok)
    message(FATAL_ERROR "${name}: output differs from the Python original's\n"
                        "--- expected\n${expected}--- actual\n${actual}--- stderr\n${errors}")
endif()
message(STATUS "${name}: output matches")
