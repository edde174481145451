# Prometheus self-metrics HTTP endpoint (--metrics-addr): ember_metrics.
find_package(Threads REQUIRED)
add_library(ember_metrics STATIC ${CMAKE_CURRENT_SOURCE_DIR}/metrics.c)
set_target_properties(ember_metrics PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_metrics PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(ember_metrics PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_metrics PUBLIC ember_core Threads::Threads)
