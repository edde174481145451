# End-to-end tests: the agent (root + BPF) against the Pyroscope-compatible receiver.
foreach(t agent_push agent_outage agent_selectors agent_churn agent_local agent_alloc agent_gpu run)
  add_test(NAME e2e.${t} COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.py)
  set_tests_properties(e2e.${t} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT "EMBER_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endforeach()
