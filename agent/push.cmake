# Push sink (libcurl + protobuf-c): ember_push. Sends uploads to Pyroscope or Alloy from one
# background thread with a bounded queue and retries.
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
find_package(Threads REQUIRED)
add_library(ember_push STATIC ${CMAKE_CURRENT_SOURCE_DIR}/push.c)
set_target_properties(ember_push PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(ember_push PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(ember_push PRIVATE ${EMBER_WARNINGS})
target_link_libraries(ember_push PUBLIC ember_core ember_pushproto PkgConfig::CURL
                      Threads::Threads)
