# Builds and runs tests/package/consumer against this project, through find_package (after an
# install into a private prefix) or through add_subdirectory.
file(REMOVE_RECURSE "${work_dir}")
set(consumer "${CMAKE_CURRENT_LIST_DIR}/consumer")

macro(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
    endif()
endmacro()

if(mode STREQUAL "find_package")
    run(${CMAKE_COMMAND} --install "${build_dir}" --prefix "${work_dir}/prefix")
    run(${CMAKE_COMMAND} -S "${consumer}" -B "${work_dir}/build" -D CMAKE_CXX_COMPILER=${compiler}
        -D CMAKE_PREFIX_PATH=${work_dir}/prefix -D MP_CONSUMER_MODE=find_package)
else()
    run(${CMAKE_COMMAND} -S "${consumer}" -B "${work_dir}/build" -D CMAKE_CXX_COMPILER=${compiler}
        -D MP_SOURCE_DIR=${source_dir} -D MP_CONSUMER_MODE=add_subdirectory)
endif()
run(${CMAKE_COMMAND} --build "${work_dir}/build")
run("${work_dir}/build/consumer")
if(NOT out STREQUAL "child says 42\nparent saw exitcode 0\n")
    message(FATAL_ERROR "unexpected output from the consumer:\n${out}")
endif()
