# GPU hand-off receiver (libember_cupti.so clients over a Unix socket) and the frames of GPU
# samples: ember_gpu. Needs no CUDA: the wire protocol header lives in cupti/ and is plain C.
find_package(Threads REQUIRED)
add_library(ember_gpu STATIC
  ${CMAKE_CURRENT_LIST_DIR}/gpu_receiver.c
  ${CMAKE_CURRENT_LIST_DIR}/gpuprof.c)
set_target_properties(ember_gpu PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_gpu PUBLIC ${CMAKE_CURRENT_LIST_DIR} ${CMAKE_SOURCE_DIR}/cupti)
target_compile_options(ember_gpu PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_gpu PUBLIC ember_core ember_symbols ember_pprof Threads::Threads)

# perf maps (/tmp/perf-PID.map: Python perf trampolines and other JITs): ember_perfmap, for the
# symbolizer to use on anonymous executable mappings.
add_library(ember_perfmap STATIC ${CMAKE_CURRENT_LIST_DIR}/perfmap.c)
set_target_properties(ember_perfmap PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_perfmap PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_options(ember_perfmap PRIVATE ${EMBER_WARNINGS})
