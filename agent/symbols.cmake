# ember_symbols: kallsyms, ELF symbol tables (libelf), /proc/PID/maps and C++ demangling
# (libstdc++'s __cxa_demangle). Position-independent so that it can go into shared objects.
add_library(ember_symbols STATIC
  ${CMAKE_CURRENT_LIST_DIR}/demangle.c
  ${CMAKE_CURRENT_LIST_DIR}/elffile.c
  ${CMAKE_CURRENT_LIST_DIR}/elfsyms.c
  ${CMAKE_CURRENT_LIST_DIR}/ksyms.c
  ${CMAKE_CURRENT_LIST_DIR}/procmaps.c
  ${CMAKE_CURRENT_LIST_DIR}/symbolizer.c)
set_target_properties(ember_symbols PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_symbols PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_options(ember_symbols PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_symbols PUBLIC ember_core ember_perfmap PkgConfig::LIBELF PkgConfig::ZLIB stdc++)
