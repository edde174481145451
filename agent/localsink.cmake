# Local directory sink (the default of `ember agent` without --server): ember_localsink.
add_library(ember_localsink STATIC ${CMAKE_CURRENT_SOURCE_DIR}/localsink.c)
set_target_properties(ember_localsink PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_localsink PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(ember_localsink PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_localsink PUBLIC ember_core)
