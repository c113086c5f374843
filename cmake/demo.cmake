# The README's first command: builds the demo and runs it.
#   cmake -P cmake/demo.cmake
include(${CMAKE_CURRENT_LIST_DIR}/Bootstrap.cmake)
mp_install_debian_packages(g++ libboost1.81-dev libfmt-dev)
mp_step(${CMAKE_COMMAND} -S . -B build/demo -D CMAKE_BUILD_TYPE=Release -D MP_BUILD_TESTS=OFF)
mp_step(${CMAKE_COMMAND} --build build/demo --target demo -j ${MP_JOBS})
mp_step(build/demo/examples/demo)
