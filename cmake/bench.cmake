# Builds the benchmarks (Release) and runs them beside their Python and OS counterparts,
# writing the table into benchmarks/README.md.
#   cmake -P cmake/bench.cmake
include(${CMAKE_CURRENT_LIST_DIR}/Bootstrap.cmake)
mp_install_debian_packages(g++ python3 libboost1.81-dev libfmt-dev libbenchmark-dev)
mp_step(${CMAKE_COMMAND} --preset bench)
mp_step(${CMAKE_COMMAND} --build --preset bench -j ${MP_JOBS})
mp_step(python3 benchmarks/run.py --binary build/bench/benchmarks/mp_bench --readme ${MP_BENCH_ARGS})
