# The `ember` executable: CLI, targets, collectors, aggregation. Its modules are in ember_cli so
# tests can link them without main().
# Stack aggregation into pprof + flame graph, shared by every profile family.
add_library(ember_agg STATIC ${CMAKE_CURRENT_SOURCE_DIR}/stackagg.c)
set_target_properties(ember_agg PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_options(ember_agg PRIVATE ${EMBER_WARNINGS})
target_include_directories(ember_agg PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(ember_agg PUBLIC ember_core ember_pprof ember_flamegraph)

add_library(ember_cli STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/options.c
  ${CMAKE_CURRENT_SOURCE_DIR}/targets.c
  ${CMAKE_CURRENT_SOURCE_DIR}/preflight.c
  ${CMAKE_CURRENT_SOURCE_DIR}/bpfutil.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cpu_collector.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cpuprof.c
  ${CMAKE_CURRENT_SOURCE_DIR}/alloc_collector.c
  ${CMAKE_CURRENT_SOURCE_DIR}/allocprof.c
  ${CMAKE_CURRENT_SOURCE_DIR}/fileio.c
  ${CMAKE_CURRENT_SOURCE_DIR}/record.c
  ${CMAKE_CURRENT_SOURCE_DIR}/spawn.c
  ${CMAKE_CURRENT_SOURCE_DIR}/refresh.c
  ${CMAKE_CURRENT_SOURCE_DIR}/fpdetect.c
  ${CMAKE_CURRENT_SOURCE_DIR}/unwmode.c
  ${CMAKE_CURRENT_SOURCE_DIR}/proctable.c
  ${CMAKE_CURRENT_SOURCE_DIR}/series.c
  ${CMAKE_CURRENT_SOURCE_DIR}/agent.c)
target_compile_options(ember_cli PRIVATE ${EMBER_WARNINGS})
target_include_directories(ember_cli PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(ember_cli PUBLIC ember_core ember_agg ember_symbols ember_flamegraph ember_pprof ember_push ember_localsink ember_metrics ember_gpu ember_unwind cpu_skel alloc_skel m)

add_executable(ember ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
target_compile_definitions(ember PRIVATE EMBER_VERSION="${PROJECT_VERSION}")
target_compile_options(ember PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember PRIVATE ember_cli)
set_target_properties(ember PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})

# libember_alloc.so: the preload-mode allocation sampler (LD_PRELOAD; see alloc_preload.c).
# Built next to `ember`, which finds it there. Frame pointers keep the probe site's stack
# walkable.
add_library(ember_alloc SHARED ${CMAKE_CURRENT_SOURCE_DIR}/alloc_preload.c)
target_include_directories(ember_alloc PRIVATE ${CMAKE_SOURCE_DIR}/bpf)
target_compile_options(ember_alloc PRIVATE ${EMBER_WARNINGS} -O2 -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
  -fvisibility=hidden -ftls-model=initial-exec)
set_target_properties(ember_alloc PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
