# GPU: libember_cupti.so (needs the CUDA toolkit's CUPTI; no GPU, no driver) and the agent's
# receiver side (needs nothing). The library's sources are compiled into each test so that they
# run under the sanitizers; libcupti is the real one.
if(EMBER_CUPTI_FOUND)
  find_package(Threads REQUIRED)
  function(ember_cupti_test name)
    ember_unit_test(${name} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.c ${EMBER_CUPTI_SOURCES}
      LIBS ${EMBER_CUPTI_LIBS} ${ARGN})
    target_include_directories(unit_${name} PRIVATE ${EMBER_CUPTI_INCLUDE_DIRS})
  endfunction()
  ember_cupti_test(cupti_join)
  ember_cupti_test(cupti_records)
  ember_cupti_test(cupti_callback)
  ember_cupti_test(cupti_handoff ember_gpu ember_cli)
else()
  message(STATUS "gpu tests: CUPTI not found, the cupti_* unit tests are not registered")
endif()

if(EMBER_CUPTI_FOUND)
  # The driver's view: dlopen the real library, call InitializeInjection without a driver.
  ember_unit_test(cupti_init SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cupti_init.c
    LIBS ${CMAKE_DL_LIBS} ARGS $<TARGET_FILE:ember_cupti>)
  add_dependencies(unit_cupti_init ember_cupti)
  # Only InitializeInjection is exported.
  add_test(NAME unit.cupti_exports
    COMMAND sh -c "nm -D --defined-only \"$1\" | awk '$2 ~ /[TtDdBbWwVvRr]/ {print $3}' | sort | tr '\\n' ' '"
            sh $<TARGET_FILE:ember_cupti>)
  set_tests_properties(unit.cupti_exports PROPERTIES
    PASS_REGULAR_EXPRESSION "^InitializeInjection[ \n]*$")
endif()

# Agent side (no CUDA needed): protocol client → gpu_receiver → gpuprof → stackagg → pprof,
# read back by pprofdump.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(_gpu_out ${CMAKE_CURRENT_BINARY_DIR}/gpu.d)
ember_unit_test(gpu_receiver SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_gpu_receiver.c
  LIBS ember_gpu ember_cli ARGS ${_gpu_out})
target_link_options(unit_gpu_receiver PRIVATE -rdynamic)
add_dependencies(unit_gpu_receiver pprofdump)
set_tests_properties(unit.gpu_receiver PROPERTIES FIXTURES_SETUP gpu_pprof)
add_test(NAME unit.gpu_pprof
  COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/check_gpu_pprof.py
          ${EMBER_PPROFDUMP} ${_gpu_out})
set_tests_properties(unit.gpu_pprof PROPERTIES FIXTURES_REQUIRED gpu_pprof)

# perf maps: a synthetic /tmp/perf-PID.map, appended to while in use.
ember_unit_test(perfmap SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_perfmap.c LIBS ember_perfmap)
