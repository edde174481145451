# ember_library(NAME SOURCES file.c... [DEPS target...] [PRIVATE_DEPS target...]): the one way a
# folder of agent/ becomes a library. Static and position-independent (parts end up in shared
# objects), our warnings, and the folder itself as the public include directory, so that a
# module includes the headers of the folders it depends on by name ("symbolizer.h") and a
# folder can only see what it links. tests/unit/test_layering.py checks the direction.
function(ember_library name)
  cmake_parse_arguments(L "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${L_SOURCES})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${EMBER_WARNINGS})
  target_link_libraries(${name} PUBLIC ${L_DEPS} PRIVATE ${L_PRIVATE_DEPS})
endfunction()
