# Symbolizer against live fixture processes; eu-addr2line (elfutils) is the ground truth.
ember_unit_test(symbolizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_symbolizer.c
  LIBS ember_symbols ARGS ${CMAKE_BINARY_DIR}/tests/fixtures)
add_dependencies(unit_symbolizer sym_fixtures)
