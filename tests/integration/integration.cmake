# Integration tests: need root and BPF; they exit 77 (skipped) with a reason otherwise.
set(EMBER_INTEGRATION_TESTS record_cpu record_kernel record_exit record_dwarf cli_errors alloc_uprobe alloc_preload)
foreach(t ${EMBER_INTEGRATION_TESTS})
  add_test(NAME integration.${t}
    COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.py)
  set_tests_properties(integration.${t} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT "EMBER_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
