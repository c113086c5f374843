# Every dependency comes from a Debian package; a missing one stops the configure step with the
# name of the package to install.
include(GNUInstallDirs)

macro(mp_find package debian_package)
    find_package(${package} ${ARGN} QUIET)
    if(NOT ${package}_FOUND)
        message(FATAL_ERROR
            "multiprocessing needs ${package}, which is missing. On Debian 12 install it with:\n"
            "    apt-get install ${debian_package}\n"
            "(cmake -P cmake/test.cmake installs everything the project needs.)")
    endif()
endmacro()

macro(mp_require_dependencies)
    set(THREADS_PREFER_PTHREAD_FLAG ON)
    find_package(Threads REQUIRED)
    mp_find(Boost libboost1.81-dev 1.81 CONFIG)
    mp_find(fmt libfmt-dev CONFIG)
endmacro()
