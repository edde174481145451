# Self-unwinding test (perf's dwarf-unwind test, in spirit): chains built -O2
# -fomit-frame-pointer without sanitizers, one with .eh_frame and one with .debug_frame only,
# capture their own registers and stack; the unwinder must reach main. No root.
add_library(unwind_chain STATIC ${CMAKE_CURRENT_SOURCE_DIR}/unwind_chain.c
  ${CMAKE_CURRENT_SOURCE_DIR}/unwind_chain_df.c)
target_include_directories(unwind_chain PUBLIC ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/agent)
target_compile_options(unwind_chain PRIVATE ${EMBER_WARNINGS} -O2 -g -fomit-frame-pointer
  -fno-optimize-sibling-calls)
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/unwind_chain_df.c PROPERTIES
  COMPILE_OPTIONS "-fno-asynchronous-unwind-tables;-fno-unwind-tables")
ember_unit_test(unwind SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_unwind.c
  LIBS ember_unwind ember_symbols unwind_chain)
