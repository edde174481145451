# pprof encoder tests. unit.pprof builds known profiles and checks the builder's own answers,
# writing the profiles to pprof.d/; unit.pprof_decode then reads them back with decoders we did
# not write (pprofdump on google/pprof, protoc --decode) and asserts their exact content.
# The tools are build dependencies (Makefile DEPS): a missing one fails the build, never skips.
find_program(EMBER_PROTOC protoc REQUIRED)
find_package(Python3 REQUIRED COMPONENTS Interpreter)

set(_pprof_out ${CMAKE_CURRENT_BINARY_DIR}/pprof.d)
ember_unit_test(pprof SOURCES test_pprof.c LIBS ember_pprof ARGS ${_pprof_out})
add_dependencies(unit_pprof pprofdump)
set_tests_properties(unit.pprof PROPERTIES FIXTURES_SETUP pprof_files)

add_test(NAME unit.pprof_decode
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/check_pprof.py
                 --pprofdump ${EMBER_PPROFDUMP} --protoc ${EMBER_PROTOC}
                 --proto-dir ${CMAKE_SOURCE_DIR}/pprof ${_pprof_out})
set_tests_properties(unit.pprof_decode PROPERTIES FIXTURES_REQUIRED pprof_files
                     ENVIRONMENT "${EMBER_TEST_ENV}")
