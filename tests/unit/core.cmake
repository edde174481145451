# Aggregation: [other] folding under Pyroscope's limits, checked with pprofdump.
set(_agg_out ${CMAKE_CURRENT_BINARY_DIR}/stackagg.d)
file(MAKE_DIRECTORY ${_agg_out})
ember_unit_test(stackagg SOURCES test_stackagg.c ${CMAKE_SOURCE_DIR}/agent/fileio.c LIBS ember_agg ARGS ${_agg_out})
set_tests_properties(unit.stackagg PROPERTIES FIXTURES_SETUP stackagg_files)
add_test(NAME unit.stackagg_decode
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_stackagg.py ${EMBER_PPROFDUMP} ${_agg_out})
set_tests_properties(unit.stackagg_decode PROPERTIES FIXTURES_REQUIRED stackagg_files)

# Targets: container ids in cgroup paths, selector matching.
ember_unit_test(targets SOURCES test_targets.c ${CMAKE_SOURCE_DIR}/agent/targets.c LIBS ember_core)

# fpdetect: frame-pointer builds told from -fomit-frame-pointer ones (--unwind auto).
ember_unit_test(fpdetect SOURCES test_fpdetect.c ${CMAKE_SOURCE_DIR}/agent/fpdetect.c
                LIBS ember_core PkgConfig::LIBELF ARGS ${CMAKE_BINARY_DIR}/tests/fixtures)
add_dependencies(unit_fpdetect cpu_split_fp cpu_split_nofp)

# The symbolizer names JIT code from /tmp/perf-PID.map.
ember_unit_test(symbolizer_perfmap SOURCES test_symbolizer_perfmap.c LIBS ember_symbols)
