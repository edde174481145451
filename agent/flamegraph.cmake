# Flame graph SVG writer. PIC so that it can also go into a shared object later.
add_library(ember_flamegraph STATIC ${CMAKE_CURRENT_SOURCE_DIR}/flamegraph.c)
set_target_properties(ember_flamegraph PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_options(ember_flamegraph PRIVATE ${EMBER_WARNINGS})
target_include_directories(ember_flamegraph PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(ember_flamegraph PUBLIC ember_core)
