# Compiles `source` with -fsyntax-only. A source with `// expect: <text>` lines must fail, and
# the diagnostics must contain each text; a source without any must compile.
#   -D compiler=... -D source=... -D include_dirs=a|b|c -P check_compile.cmake
string(REPLACE "|" ";" include_dirs "${include_dirs}")
list(REMOVE_ITEM include_dirs "")
list(REMOVE_DUPLICATES include_dirs)
list(TRANSFORM include_dirs PREPEND "-I")

execute_process(
    COMMAND ${compiler} -std=c++20 -fsyntax-only ${include_dirs} ${source}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)

file(STRINGS ${source} expectations REGEX "^// expect: ")
list(TRANSFORM expectations REPLACE "^// expect: " "")
if(NOT expectations)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "${source} must compile but failed:\n${output}")
    endif()
    return()
endif()
if(result EQUAL 0)
    message(FATAL_ERROR "${source} compiled, but it must not")
endif()
foreach(text IN LISTS expectations)
    string(FIND "${output}" "${text}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "${source} failed to compile, but without \"${text}\":\n${output}")
    endif()
endforeach()
message(STATUS "${source} failed to compile, as it must:\n${output}")
