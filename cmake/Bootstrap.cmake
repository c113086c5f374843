# Shared by the README's commands (cmake -P cmake/demo.cmake, cmake -P cmake/test.cmake):
# installs the Debian packages that are missing, and runs steps that stop at the first failure.
get_filename_component(MP_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

function(mp_install_debian_packages)
    set(missing "")
    foreach(pkg IN LISTS ARGN)
        execute_process(COMMAND dpkg-query -W -f=${pkg}:\${Status}\n ${pkg}
                        OUTPUT_VARIABLE status ERROR_QUIET RESULT_VARIABLE rc)
        if(NOT rc EQUAL 0 OR NOT status MATCHES "install ok installed")
            list(APPEND missing ${pkg})
        endif()
    endforeach()
    if(NOT missing)
        return()
    endif()
    message(STATUS "Installing the missing Debian packages: ${missing}")
    set(sudo "")
    execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT uid STREQUAL "0")
        set(sudo sudo)
    endif()
    set(ENV{DEBIAN_FRONTEND} noninteractive)
    mp_step(${sudo} apt-get update -qq)
    mp_step(${sudo} apt-get install -y -qq --no-install-recommends ${missing})
endfunction()

# Runs a command in MP_ROOT, echoing its output; stops the script if it fails.
function(mp_step)
    message(STATUS "+ ${ARGN}")
    execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${MP_ROOT}" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif()
endfunction()

cmake_host_system_information(RESULT MP_JOBS QUERY NUMBER_OF_LOGICAL_CORES)
