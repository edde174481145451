# ember_unwind: DWARF unwinding of user stack snapshots with libunwind's remote API
# (libunwind-generic = the native target, x86-64 here). Position-independent like ember_symbols.
pkg_check_modules(UNWIND REQUIRED IMPORTED_TARGET libunwind-generic)
add_library(ember_unwind STATIC ${CMAKE_CURRENT_LIST_DIR}/unwind.c
  ${CMAKE_CURRENT_LIST_DIR}/unwind_sigmask.c)
set_target_properties(ember_unwind PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_unwind PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_options(ember_unwind PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_unwind PUBLIC ember_core ember_symbols PkgConfig::UNWIND PkgConfig::ZLIB)
