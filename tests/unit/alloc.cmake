# Allocation sampling math and the free-probe offset walk (no root, no BPF).
ember_unit_test(alloc_sample SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_alloc_sample.c
  LIBS ember_cli)
target_include_directories(unit_alloc_sample PRIVATE ${CMAKE_SOURCE_DIR}/bpf)
