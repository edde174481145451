# Flame graph writer. flamegraph.c is compiled into the test itself so that it runs under the
# sanitizers; the test writes SVGs that check_svg.py then parses as XML (stdlib only).
set(EMBER_FG_OUT ${CMAKE_CURRENT_BINARY_DIR}/flamegraph_out)
ember_unit_test(flamegraph
  SOURCES test_flamegraph.c ${CMAKE_SOURCE_DIR}/agent/flamegraph.c
  LIBS ember_core
  ARGS ${EMBER_FG_OUT})

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME unit.flamegraph_svg
    COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/check_svg.py ${EMBER_FG_OUT})
  set_tests_properties(unit.flamegraph PROPERTIES FIXTURES_SETUP flamegraph_svg)
  set_tests_properties(unit.flamegraph_svg PROPERTIES FIXTURES_REQUIRED flamegraph_svg)
else()
  message(STATUS "python3 not found: unit.flamegraph_svg is not registered")
endif()
