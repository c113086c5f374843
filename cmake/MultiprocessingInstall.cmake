# install() with an exported package, so another project can find_package(multiprocessing).
include(CMakePackageConfigHelpers)

install(TARGETS multiprocessing EXPORT multiprocessingTargets)
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT multiprocessingTargets
    NAMESPACE multiprocessing::
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/multiprocessing)
configure_package_config_file(cmake/multiprocessingConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/multiprocessingConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/multiprocessing)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/multiprocessingConfigVersion.cmake
    COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/multiprocessingConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/multiprocessingConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/multiprocessing)
